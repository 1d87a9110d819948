import { defineConfig } from '@playwright/test';

// Run by tests/browser.rs, which starts Marionette and sets MARIONETTE_URL.
// Debian's chromium, never a downloaded browser; one worker, because the
// tests share one Marionette and its order book. One retry, because these
// machines are shared and a loaded one can miss a timeout: the summary
// reporter names any test that passed only on its retry.
export default defineConfig({
  testDir: './e2e',
  workers: 1,
  fullyParallel: false,
  retries: 1,
  timeout: 90_000,
  expect: { timeout: 10_000 },
  reporter: [['list'], ['./reporters/summary.ts']],
  use: {
    baseURL: process.env.MARIONETTE_URL ?? 'http://127.0.0.1:8080',
    headless: true,
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/lib/chromium/chromium' },
    trace: 'off',
    screenshot: 'only-on-failure',
  },
});
