import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Port 5173 is the origin HMS allows by default in dev (HMS_CORS_ORIGINS); `vite preview` (4173)
// needs HMS_CORS_ORIGINS to name it, as scripts/demo.mjs does.
export default defineConfig({
  plugins: [react()],
  // Relative asset URLs: the built app (hash routing) can be served from any path.
  base: "./",
  build: {
    rolldownOptions: {
      output: {
        // Libraries change less often than the app: separate chunks stay cached across releases.
        codeSplitting: {
          groups: [
            { name: "react", test: /node_modules[\\/](react|react-dom|scheduler)[\\/]/ },
            { name: "graphql", test: /node_modules[\\/]graphql[\\/]/ },
            { name: "apollo", test: /node_modules[\\/]/ },
          ],
        },
      },
    },
  },
  server: { host: "127.0.0.1", port: 5173, strictPort: true },
  preview: { host: "127.0.0.1", port: 4173, strictPort: true },
});
