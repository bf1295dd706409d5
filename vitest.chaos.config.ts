import { defineConfig } from 'vitest/config';

// `npm run test:chaos`: real worker processes killed at random instants (test/chaos/*.chaos.ts).
// SLUICE_CHAOS_TRIALS sets the number of kill trials (CI: 20; 100 or more by hand).
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    globalSetup: ['test/setup/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 600_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
});
