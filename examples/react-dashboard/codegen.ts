// GraphQL Code Generator: every operation in src/operations is validated against the server's
// committed schema (../../schema.graphql) and typed; an invalid operation fails `npm run check`.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/operations/**/*.graphql"],
  generates: {
    "src/__generated__/graphql.ts": {
      plugins: ["typescript-operations", "typed-document-node"],
      config: {
        // Apollo Client adds __typename to every selection set it sends.
        nonOptionalTypename: true,
        skipTypeNameForRoot: true,
        avoidOptionals: { field: true, inputValue: false },
        enumType: "string-literal",
        useTypeImports: true,
        defaultScalarType: "unknown",
        // RFC 3339 instants and ISO dates travel as strings.
        scalars: { ID: "string", DateTime: "string", Date: "string" },
      },
    },
  },
};

export default config;
