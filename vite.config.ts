import { defineConfig } from 'vitest/config';

const backend = process.env.AEGIS_SERVER ?? 'http://localhost:8080';

export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // tfjs with three backends is large; it is one cached download per visitor.
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: {
        demo: 'demo/index.html',
        task: 'demo/task-example.html',
        bench: 'e2e/bench/train.html',
        embed: 'client/embed.ts',
      },
      output: {
        // The embed script is referenced by participating sites, so its name must be stable.
        entryFileNames: (chunk) => (chunk.name === 'embed' ? 'aegis-embed.js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  worker: { format: 'es' },
  // `vite` dev server: the page from Vite, socket.io and the API from a running `npm start`.
  server: {
    proxy: {
      '/socket.io': { target: backend, ws: true },
      '/api': backend,
    },
  },
  test: {
    include: ['{shared,client,server,demo,e2e,deploy}/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // e2e files start servers and browsers; run files one at a time on 2-core machines.
    fileParallelism: false,
    // CI also writes a JSON report, from which .ci/run prints a plain "N passed, N failed" line.
    reporters: process.env.CI
      ? ['default', ['json', { outputFile: 'test-results/vitest.json' }]]
      : ['default'],
  },
});
