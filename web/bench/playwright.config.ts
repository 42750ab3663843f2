// The web app's budgets (docs/web-app-plan.md §8), run by `cargo xtask web-budgets`, never by
// `cargo xtask test`: the normal run's testDir is ./tests, this one is ./bench. Benchmarks
// measure; they assert nothing about timing. The fixtures (server, Chromium) are the tests'.

import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: '.',
  testMatch: 'budgets.spec.ts',
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: true,
  // Seeding 10,000 messages and the browser syncing them takes minutes on two cores.
  timeout: 30 * 60_000,
  expect: { timeout: 60_000 },
  outputDir: '../test-results/bench',
});
