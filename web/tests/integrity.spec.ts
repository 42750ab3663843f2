// The passphrase rule's wasm (loaded by the create-profile screen on first use) is fetched with
// its Subresource Integrity hash from the build: a module changed after the build (on the
// server, or on the way) is refused, never run, no profile is made with a passphrase nobody
// checked, and the person is told plainly. (The core's wasm is fetched the same way by the
// SharedWorker, whose requests Playwright's routes do not see.)
//
// An own context, without the fixtures' "no console error" check: the browser reports the
// refused module as an error, which is the point here. Service workers are blocked so that
// every request goes through the route.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Browser, BrowserContext, Route } from '@playwright/test';

import { expect, test, WEB_DIR } from './fixtures.ts';

/**
 * Serves the built file `route` asks for with a custom section added at its end: still a valid
 * module that would run the same, so only the integrity check can refuse it.
 */
async function tampered(route: Route): Promise<void> {
  const name = new URL(route.request().url()).pathname;
  const section = Buffer.from([0x00, 0x05, 0x04, ...Buffer.from('test')]);
  const body = Buffer.concat([readFileSync(join(WEB_DIR, name)), section]);
  await route.fulfill({ status: 200, contentType: 'application/wasm', body });
}

async function contextWithout(browser: Browser, baseURL: string): Promise<BrowserContext> {
  return browser.newContext({ baseURL, serviceWorkers: 'block' });
}

test('a changed passphrase-rule wasm is refused, and no profile is made with an unchecked passphrase', async ({
  browser,
  server,
}) => {
  const context = await contextWithout(browser, server.origin);
  try {
    let served = 0;
    await context.route(/\/assets\/confide_passphrase_bg-[^/]+\.wasm$/, async (route) => {
      served++;
      await tampered(route);
    });
    const page = await context.newPage();
    await page.goto('/');
    await expect(page.getByRole('heading', { name: 'Welcome' })).toBeVisible();
    await page.getByRole('textbox', { name: 'Name in your groups' }).fill('Bob');
    await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill('violet harbour lantern quietly');
    await page.getByRole('button', { name: 'Create my profile' }).click();
    await expect(page.getByRole('alert')).toHaveText(
      "The passphrase check didn't load, so no profile was made. Reload the page and try again.",
    );
    await expect(page.getByRole('heading', { name: 'Welcome' })).toBeVisible();
    // Tried again on the next check rather than remembered as failed.
    const before = served;
    await page.getByRole('button', { name: 'Create my profile' }).click();
    await expect.poll(() => served).toBeGreaterThan(before);
    await expect(page.getByRole('alert')).toBeVisible();
    await expect(page.getByRole('heading', { name: 'Welcome' })).toBeVisible();
  } finally {
    await context.close();
  }
});
