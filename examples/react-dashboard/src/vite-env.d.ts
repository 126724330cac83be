/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The GraphQL endpoint (default http://127.0.0.1:8000/graphql). */
  readonly VITE_HMS_API?: string;
  /** A bearer token baked in at build or dev time (`hms token --role front_desk ...`). */
  readonly VITE_HMS_TOKEN?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
