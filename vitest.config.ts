import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The Deno and Chromium suites start other runtimes.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
