// The web app's build. The server embeds `dist/` (or `$VIDEOSYNC_WEB_OUT`,
// where the server's build script asks for it) at compile time.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  resolve: {
    alias: {
      // The sync engine's JavaScript module, from its crate: one source.
      "videosync-sync": fileURLToPath(new URL("../videosync-sync/js/videosync-sync.js", import.meta.url)),
    },
  },
  build: {
    outDir: process.env.VIDEOSYNC_WEB_OUT ?? "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // hls.js is ~500 KB before compression and loads only on the channel page.
    chunkSizeWarningLimit: 600,
  },
  server: {
    fs: { allow: [fileURLToPath(new URL("..", import.meta.url))] },
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", ws: true },
      "/media": "http://127.0.0.1:8080",
    },
  },
});
