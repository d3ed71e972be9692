import { defineConfig } from 'vitest/config';

/**
 * The reload acceptance test drives seven real clients through 20 reloads and an upgrade; it
 * measures the product's promise (0 failed requests), not how the machine copes with other test
 * files at once, so it runs alone after everything else (projects with a higher groupOrder start
 * when the lower ones are done).
 */
const ALONE = ['test/integration/reload.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real processes and bind sockets: keep files in separate forks.
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: ALONE, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'alone', include: ALONE, sequence: { groupOrder: 1 } } },
    ],
  },
});
