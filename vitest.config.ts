import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file in its own process: PKCS#11 modules keep global state (C_Initialize, SOFTHSM2_CONF).
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
