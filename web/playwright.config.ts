// Playwright: the web app in Debian's Chromium against the real confide-server. `cargo xtask
// test` runs it (`playwright test --reporter=json,list`) after `cargo xtask web`; the server and
// the browser are started by the fixtures (tests/fixtures.ts), never downloaded.

import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: './tests',
  // One test at a time: two cores are shared by the server, Chromium and the build.
  workers: 1,
  fullyParallel: false,
  // A flaky test is a failing test.
  retries: 0,
  // A stray test.only must not hide every other test in CI.
  forbidOnly: true,
  // The scenario (plan §6) is one long test; a hang still ends.
  timeout: 10 * 60_000,
  expect: { timeout: 15_000 },
  outputDir: './test-results',
  use: {
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
});
