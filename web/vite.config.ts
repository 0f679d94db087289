import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the API and /ws to a chat server (CHAT_URL, default :8080).
const server = process.env.CHAT_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  build: {
    // web/dist is committed and embedded into the `chat` binary: keep it small and the
    // same bytes for the same sources (web/scripts/test.sh checks that).
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/v1': server,
      '/ws': { target: server.replace(/^http/, 'ws'), ws: true },
      '/openapi.json': server,
    },
  },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          // Protocol tests need no DOM; UI tests ask for jsdom in a file comment.
          environment: 'node',
          include: ['src/**/*.test.{ts,tsx}'],
        },
      },
      {
        test: {
          name: 'e2e',
          environment: 'node',
          include: ['e2e/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // One browser, one server: the steps of a scenario run in order.
          fileParallelism: false,
        },
      },
    ],
  },
});
