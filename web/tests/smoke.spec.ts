// The app served by the real confide-server, in Chromium: it loads over https with the strict
// headers and no CSP violation or console error (the fixtures fail the test on any), the worker
// starts the wasm and says hello with the release's version, axe finds nothing serious, and
// tabs share one worker.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { BrowserContext, Page, Response } from '@playwright/test';

import { checkScreen } from './a11y.ts';
import { expect, REPO, test } from './fixtures.ts';

/** The workspace version (Cargo.toml `[workspace.package]`), which the wasm reports. */
const VERSION = (() => {
  const manifest = readFileSync(join(REPO, 'Cargo.toml'), 'utf8');
  const section = manifest.slice(manifest.indexOf('[workspace.package]'));
  const version = /^version = "([^"]+)"/m.exec(section)?.[1];
  if (version === undefined) throw new Error('Cargo.toml has no [workspace.package] version');
  return version;
})();

/** The headers every response of the app carries (plan §5), exactly. */
const STRICT_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; " +
    "font-src 'none'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; " +
    "form-action 'none'; frame-ancestors 'none'; object-src 'none'; " +
    "require-trusted-types-for 'script'; trusted-types svelte-trusted-html confide-worker-url",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()',
  vary: 'Accept-Encoding',
};

/** Headers no response may carry: no server banner, no cookies, no HSTS for a dev certificate. */
const ABSENT_HEADERS = ['server', 'set-cookie', 'strict-transport-security'];

/** Opens the app and waits for the welcome screen, returning every response the page got. */
async function openApp(page: Page): Promise<Response[]> {
  const responses: Response[] = [];
  page.on('response', (response) => responses.push(response));
  const document = await page.goto('/');
  expect(document?.status()).toBe(200);
  await expect(page.getByRole('heading', { level: 1, name: 'Confide' })).toBeVisible();
  await expect(page.getByRole('heading', { level: 2, name: 'Welcome' })).toBeVisible();
  await expect(page.getByRole('contentinfo')).toHaveText(`Confide ${VERSION}`);
  return responses;
}

/** The SharedWorkers running in `context`, as Chromium's DevTools protocol lists them. */
async function sharedWorkers(context: BrowserContext, page: Page): Promise<string[]> {
  const session = await context.newCDPSession(page);
  const own = await session.send('Target.getTargetInfo');
  const { targetInfos } = await session.send('Target.getTargets');
  await session.detach();
  return targetInfos
    .filter(
      (target) =>
        target.type === 'shared_worker' &&
        target.browserContextId === own.targetInfo.browserContextId,
    )
    .map((target) => target.url);
}

test('the app loads over https with the strict headers, the worker says hello, axe is clean', async ({
  page,
  problems,
  server,
}) => {
  const responses = await openApp(page);

  expect(page.url()).toBe(`${server.origin}/`);
  // The pin the fixtures computed is the one `--dev` tells people to start Chromium with.
  expect(server.output.join('\n')).toContain(`--ignore-certificate-errors-spki-list=${server.spki}`);
  const paths = responses.map((response) => new URL(response.url()).pathname).sort();
  expect(paths).toContain('/');
  expect(paths.some((path) => /^\/assets\/index-.*\.js$/.test(path)), `${paths}`).toBe(true);
  expect(paths.some((path) => /^\/assets\/index-.*\.css$/.test(path)), `${paths}`).toBe(true);
  for (const response of responses) {
    expect(new URL(response.url()).origin).toBe(server.origin);
    expect(response.status(), response.url()).toBe(200);
    const headers = await response.allHeaders();
    for (const [name, value] of Object.entries(STRICT_HEADERS)) {
      expect(headers[name], `${name} of ${response.url()}`).toBe(value);
    }
    for (const name of ABSENT_HEADERS) {
      expect(headers[name], `${name} of ${response.url()}`).toBeUndefined();
    }
    const path = new URL(response.url()).pathname;
    if (path.endsWith('.js')) {
      expect(headers['content-type']).toBe('text/javascript; charset=utf-8');
      // Served from the build's pre-compressed copy.
      expect(headers['content-encoding'], path).toBe('br');
    }
    expect(headers['cache-control'], path).toBe(
      path.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    );
  }

  // One SharedWorker owns the core; it loaded the wasm and said hello (the footer's version
  // comes from the wasm through the worker).
  expect(await sharedWorkers(page.context(), page)).toHaveLength(1);
  expect(problems).toEqual([]);

  await checkScreen(page, 'welcome');
});

test('a second tab shares the first tab’s worker and is not locked out', async ({ context, page }) => {
  await openApp(page);
  const second = await context.newPage();
  await openApp(second);
  await expect(second.getByRole('heading', { name: 'Confide is open in another tab' })).toHaveCount(0);

  const workers = await sharedWorkers(context, second);
  expect(workers).toHaveLength(1);
  expect(workers[0]).toMatch(/\/assets\/worker-[^/]*\.js$/);
  // The first tab is still served by it.
  await page.reload();
  await expect(page.getByRole('contentinfo')).toHaveText(`Confide ${VERSION}`);
});

test('without SharedWorker, a second tab says Confide is open in another tab', async ({ context, page }) => {
  // A browser without SharedWorker: each tab starts its own dedicated Worker, and the Web Lock
  // lets only the first one own the core.
  await context.addInitScript(() => {
    delete (globalThis as { SharedWorker?: unknown }).SharedWorker;
  });
  await openApp(page);
  const second = await context.newPage();
  await second.goto('/');
  await expect(second.getByRole('heading', { name: 'Confide is open in another tab' })).toBeVisible();
  await expect(second.getByRole('heading', { name: 'Welcome' })).toHaveCount(0);
  expect(await sharedWorkers(context, second)).toHaveLength(0);
  await checkScreen(second, 'open-elsewhere');

  // Once the first tab is gone, its worker and lock go with it (as the browser gets to it), and
  // the other tab owns the core after a reload.
  await page.close();
  await expect(async () => {
    await second.reload();
    await expect(second.getByRole('heading', { name: 'Welcome' })).toBeVisible({ timeout: 1_000 });
  }).toPass();
});
