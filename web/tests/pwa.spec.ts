// The installable app and its trust surface (issue 15, M7): the web manifest and its icons; the
// service worker, registered over the SPKI-pinned https origin, precaching exactly the checked
// app shell and nothing else, refusing a shell file that does not match the manifest; About's
// release hash; and an update that is announced and waits for the person to reload.

import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Page } from '@playwright/test';

import { noticeFor, notificationTag, type NotifyContext } from '../src/pwa/notify.ts';
import type { CoreEvent } from '../src/sdk/protocol.ts';
import { checkScreen } from './a11y.ts';
import { expect, runServer, test, WEB_DIR } from './fixtures.ts';

/** The built app the fixtures' server serves. */

type Manifest = Record<string, { sha256: string; size: number }>;

/** The build's manifest, and its release hash as the build wrote it. */
const MANIFEST_BYTES = readFileSync(join(WEB_DIR, 'asset-manifest.json'));
const MANIFEST = JSON.parse(MANIFEST_BYTES.toString('utf8')) as Manifest;
const RELEASE_HASH = readFileSync(join(WEB_DIR, 'release-hash.txt'), 'utf8').trim();

/** The paths the service worker must hold: every listed file but itself, and the manifest. */
const SHELL = [...Object.keys(MANIFEST).filter((path) => path !== '/sw.js'), '/asset-manifest.json'].sort();

/** The update banner's heading. */
const UPDATE_READY = 'A new version of Confide is ready — reload to use it';

function sha256(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** `hex` as the app groups it (src/pwa/hash.ts). */
function grouped(hex: string): string {
  return hex.match(/.{1,4}/g)?.join(' ') ?? '';
}

/** Waits until a service worker controls `page`, and returns its script URL. */
async function controlled(page: Page): Promise<string> {
  await expect
    .poll(() => page.evaluate(() => navigator.serviceWorker.controller?.scriptURL ?? null))
    .not.toBeNull();
  return page.evaluate(() => navigator.serviceWorker.controller?.scriptURL ?? '');
}

/**
 * The core's worker keeps one answer of the server besides the shell: `/web-config.json`, which
 * names the relay (src/sdk/worker.ts), so that an installed app starts while its host is down.
 */
const RELAY_CACHE = 'confide-relay';

/** The caches of the page's origin but {@link RELAY_CACHE}, each with the paths it holds, sorted. */
function cachedPaths(page: Page): Promise<Record<string, string[]>> {
  return page.evaluate(async (relayCache) => {
    const found: Record<string, string[]> = {};
    for (const name of (await caches.keys()).filter((name) => name !== relayCache)) {
      const keys = await (await caches.open(name)).keys();
      found[name] = keys.map((request) => new URL(request.url).pathname).sort();
    }
    return found;
  }, RELAY_CACHE);
}

/** The release hash About shows, digits only. */
async function aboutReleaseHash(page: Page): Promise<string> {
  const hash = page.getByTestId('release-hash');
  await expect(hash).toBeVisible();
  return (await hash.innerText()).replace(/\s/g, '');
}

/**
 * A confide-server of our own (the fixtures' one cannot be restarted), started like the
 * fixtures start theirs but with the fixtures' server's development certificate copied into its
 * data directory, so that the browser (pinned to that certificate) trusts it too.
 */
async function ownServer(options: { webDir: string; dataDir: string; listen: string }) {
  const args = ['--dev', '--data-dir', options.dataDir, '--listen', options.listen, '--web-dir', options.webDir];
  const run = await runServer(args, []);
  return { ...run, origin: `https://localhost:${run.port}` };
}

test('the web manifest is served and installable, its icons load, its colours are the app’s', async ({
  page,
  server,
}) => {
  await page.goto('/');
  await expect(page.locator('link[rel="manifest"]')).toHaveAttribute('href', '/manifest.webmanifest');
  await controlled(page);

  const served = await page.evaluate(async () => {
    const response = await fetch('/manifest.webmanifest', { cache: 'no-store' });
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      cache: response.headers.get('cache-control'),
      text: await response.text(),
    };
  });
  expect(served.status).toBe(200);
  expect(served.type).toBe('application/manifest+json');
  const manifest = JSON.parse(served.text) as {
    name: string;
    short_name: string;
    start_url: string;
    display: string;
    background_color: string;
    theme_color: string;
    icons: { src: string; sizes: string; type: string }[];
  };
  expect(manifest.name).toBe('Confide');
  expect(manifest.short_name).toBe('Confide');
  expect(manifest.start_url).toBe('/');
  expect(manifest.display).toBe('standalone');

  // The colours are app.css's: the light background and the accent.
  const colours = await page.evaluate(() => {
    const style = getComputedStyle(document.documentElement);
    return { bg: style.getPropertyValue('--bg').trim(), accent: style.getPropertyValue('--accent').trim() };
  });
  expect(manifest.background_color).toBe(colours.bg);
  expect(manifest.theme_color).toBe(colours.accent);

  // Each icon is a PNG file of this origin (no data: URL) with the size it claims.
  expect(manifest.icons.map((icon) => icon.sizes).sort()).toEqual(['192x192', '512x512']);
  for (const icon of manifest.icons) {
    expect(icon.type).toBe('image/png');
    expect(icon.src).toMatch(/^\/icons\/[^/]+\.png$/);
    expect(Object.keys(MANIFEST)).toContain(icon.src);
    const loaded = await page.evaluate(async (src) => {
      const response = await fetch(src);
      const bitmap = await createImageBitmap(await response.blob());
      return { status: response.status, type: response.headers.get('content-type'), size: `${bitmap.width}x${bitmap.height}` };
    }, icon.src);
    expect(loaded).toEqual({ status: 200, type: 'image/png', size: icon.sizes });
  }

  // Chromium itself finds the manifest valid and the app installable.
  const session = await page.context().newCDPSession(page);
  const parsed = await session.send('Page.getAppManifest');
  expect(parsed.url).toBe(`${server.origin}/manifest.webmanifest`);
  expect(parsed.errors).toEqual([]);
  // The one thing Chromium holds against installing is that Playwright's contexts are
  // off-the-record profiles ("in-incognito"): no manifest, icon or service-worker error.
  const installability = await session.send('Page.getInstallabilityErrors');
  expect(installability.installabilityErrors.map((error) => error.errorId)).toEqual(['in-incognito']);
  await session.detach();
});

test('the service worker registers over the pinned https origin and holds exactly the checked shell', async ({
  page,
  server,
}) => {
  await page.goto('/');
  expect(new URL(page.url()).protocol).toBe('https:');
  expect(await controlled(page)).toBe(`${server.origin}/sw.js`);

  // One cache, holding exactly the manifest's files (less /sw.js) and the manifest itself.
  const held = await cachedPaths(page);
  expect(Object.keys(held)).toHaveLength(1);
  expect(Object.keys(held)[0]).toMatch(/^confide-shell-[0-9a-f]{64}$/);
  expect(Object.values(held)[0]).toEqual(SHELL);

  // What it holds is byte for byte what the manifest lists.
  const digests = await page.evaluate(async ({ paths, shell }) => {
    const cache = await caches.open(shell);
    const found: Record<string, string> = {};
    for (const path of paths) {
      const response = await cache.match(path);
      const bytes = await response?.arrayBuffer();
      if (bytes === undefined) continue;
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      found[path] = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    }
    return found;
  }, { paths: SHELL, shell: Object.keys(held)[0] ?? '' });
  for (const path of SHELL) {
    expect(digests[path], path).toBe(path === '/asset-manifest.json' ? RELEASE_HASH : MANIFEST[path]?.sha256);
  }

  // Reloaded, the page comes from the cache, with the server's headers (the CSP above all).
  const fromWorker: string[] = [];
  page.on('response', (response) => {
    if (response.fromServiceWorker()) fromWorker.push(new URL(response.url()).pathname);
  });
  const document = await page.reload();
  expect(document?.fromServiceWorker()).toBe(true);
  const headers = await document?.allHeaders();
  expect(headers?.['content-security-policy']).toContain("require-trusted-types-for 'script'");
  expect(headers?.['content-security-policy']).toContain("default-src 'none'");
  await expect(page.getByRole('heading', { level: 2, name: 'Welcome' })).toBeVisible();
  expect(fromWorker.some((path) => /^\/assets\/index-.*\.js$/.test(path)), `${fromWorker}`).toBe(true);

  // The app has talked to the server over its websocket by now; the cache is still exactly the
  // shell: nothing the core sends or receives, and nothing else fetched, is ever stored.
  await page.evaluate(() => fetch('/asset-manifest.json?after-reload'));
  expect(Object.values(await cachedPaths(page))).toEqual([SHELL]);
  // Besides the shell, the worker kept only the server's answer about the relay (a 404 here).
  const relaySetting = await page.evaluate(async (name) => {
    const cache = await caches.open(name);
    const keys = await cache.keys();
    const answers = await Promise.all(keys.map(async (request) => (await cache.match(request))?.status));
    return { paths: keys.map((request) => new URL(request.url).pathname), answers };
  }, RELAY_CACHE);
  expect(relaySetting).toEqual({ paths: ['/web-config.json'], answers: [404] });
});

test('a shell file that does not match the manifest is never cached', async ({ page }) => {
  await page.goto('/');
  await controlled(page);
  const check = (manifest: string) =>
    page.evaluate(async (text) => {
      const registration = await navigator.serviceWorker.ready;
      const worker = registration.active;
      if (worker === null) throw new Error('no active service worker');
      const channel = new MessageChannel();
      const answer = new Promise<{ refused: string[]; cached: string[]; error?: string }>((resolve) => {
        channel.port1.onmessage = (event) => resolve(event.data);
      });
      const bytes = new TextEncoder().encode(text).buffer;
      worker.postMessage({ kind: 'verify-shell', manifest: bytes }, [channel.port2]);
      return answer;
    }, manifest);

  // The build's own manifest: everything matches, and the check cached the whole shell.
  const genuine = await check(MANIFEST_BYTES.toString('utf8'));
  expect(genuine).toEqual({ kind: 'shell-check', refused: [], cached: SHELL });

  // One hash changed (the page itself, as a server that modified it would): refused, and
  // nothing at all was cached.
  const index = MANIFEST['/index.html'];
  if (index === undefined) throw new Error('the manifest lists no /index.html');
  const flipped = (index.sha256[0] === '0' ? '1' : '0') + index.sha256.slice(1);
  const tampered = { ...MANIFEST, '/index.html': { ...index, sha256: flipped } };
  expect(await check(JSON.stringify(tampered))).toEqual({ kind: 'shell-check', refused: ['/index.html'], cached: [] });

  // A size that does not match is refused too.
  const resized = { ...MANIFEST, '/index.html': { ...index, size: index.size + 1 } };
  expect(await check(JSON.stringify(resized))).toEqual({ kind: 'shell-check', refused: ['/index.html'], cached: [] });

  // And the shell the app runs on is untouched by any of it.
  expect(Object.values(await cachedPaths(page))).toEqual([SHELL]);
});

test('About shows the release hash the build wrote, grouped for comparison', async ({ page }) => {
  await page.goto('/#about');
  await expect(page.getByRole('heading', { level: 2, name: 'About Confide' })).toBeVisible();
  expect(await aboutReleaseHash(page)).toBe(RELEASE_HASH);
  await expect(page.getByTestId('release-hash')).toHaveText(grouped(RELEASE_HASH));
  await expect(page.getByText('confide web verify --expect <release hash>')).toBeVisible();
  await checkScreen(page, 'about');
});

test('a new release is announced, and waits until the person reloads', async ({ page, server }) => {
  // A second build: the same app with a service worker whose bytes (and so its cache's name)
  // differ, as a new release's would. Its manifest lists the new /sw.js, so its release hash
  // differs; the server checks it at startup like any build.
  const work = mkdtempSync(join(tmpdir(), 'confide-pwa-test-'));
  const secondDir = join(work, 'web2');
  cpSync(WEB_DIR, secondDir, { recursive: true });
  const sw = readFileSync(join(secondDir, 'sw.js'), 'utf8');
  const oldHash = /[0-9a-f]{64}/.exec(sw)?.[0];
  if (oldHash === undefined) throw new Error('sw.js does not carry the bundle hash');
  const newSw = sw.replaceAll(oldHash, sha256('the next release'));
  expect(newSw).not.toBe(sw);
  writeFileSync(join(secondDir, 'sw.js'), newSw);
  const secondManifest: Manifest = { ...MANIFEST, '/sw.js': { sha256: sha256(newSw), size: Buffer.byteLength(newSw) } };
  const secondBytes = `${JSON.stringify(secondManifest, null, 2)}\n`;
  writeFileSync(join(secondDir, 'asset-manifest.json'), secondBytes);
  // Their compressed copies are of the first build's files: gone, so the server sends these plain.
  for (const stale of ['sw.js.br', 'sw.js.gz', 'asset-manifest.json.br', 'asset-manifest.json.gz']) {
    rmSync(join(secondDir, stale));
  }
  const secondRelease = sha256(secondBytes);
  expect(secondRelease).not.toBe(RELEASE_HASH);

  // One data directory for both servers, with the certificate the browser is pinned to.
  const dataDir = join(work, 'data');
  mkdirSync(dataDir);
  for (const file of ['dev-cert.pem', 'dev-key.pem']) copyFileSync(join(server.dataDir, file), join(dataDir, file));

  const first = await ownServer({ webDir: WEB_DIR, dataDir, listen: '127.0.0.1:0' });
  let second: Awaited<ReturnType<typeof ownServer>> | undefined;
  try {
    await page.goto(`${first.origin}/#about`);
    await controlled(page);
    expect(await aboutReleaseHash(page)).toBe(RELEASE_HASH);

    // The server is upgraded: same origin, same data, the second build.
    await first.stop();
    second = await ownServer({ webDir: secondDir, dataDir, listen: `127.0.0.1:${first.port}` });
    expect(second.origin).toBe(first.origin);
    await page.evaluate(async () => {
      const registration = await navigator.serviceWorker.getRegistration();
      await registration?.update();
    });

    // Announced, with its version and release hash; the page still runs the first release.
    const banner = page.getByRole('region', { name: UPDATE_READY });
    await expect(banner).toBeVisible();
    await expect(banner).toContainText(grouped(secondRelease));
    expect(await aboutReleaseHash(page)).toBe(RELEASE_HASH);

    // A reload of the page alone does not apply it: the new version still waits, and says so.
    await page.reload();
    await expect(banner).toBeVisible();
    expect(await aboutReleaseHash(page)).toBe(RELEASE_HASH);
    expect(await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())?.waiting !== null)).toBe(true);
    await checkScreen(page, 'update-banner');

    // "Reload": the new version takes over, the page reloads into it, and only its shell is kept.
    await banner.getByRole('button', { name: 'Reload' }).click();
    await expect(page.getByRole('heading', { level: 2, name: 'About Confide' })).toBeVisible();
    await expect.poll(() => aboutReleaseHash(page)).toBe(secondRelease);
    await expect(banner).toHaveCount(0);
    const held = await cachedPaths(page);
    expect(Object.keys(held)).toHaveLength(1);
    expect(Object.values(held)[0]).toEqual(SHELL);
  } finally {
    await first.stop();
    await second?.stop();
    rmSync(work, { recursive: true, force: true });
  }
});

test('notifications name the group by its label and never carry what was written', () => {
  const context = (openGroup: string | undefined): NotifyContext => ({
    openGroup,
    labelOf: (group) => (group === 'g1' ? 'Tuesday group' : 'Other'),
  });
  const secret = 'I relapsed last night';
  const message = {
    type: 'message',
    message: { group: 'g1', seq: 7, number: 3, id: 'm', sender: 'u', senderDevice: 'd', senderName: 'Bob', sentAt: 0, receivedAt: 0, text: secret, replyTo: undefined },
  } as CoreEvent;
  const urgent = {
    type: 'urgentRequest',
    request: { group: 'g1', user: 'u', displayName: 'Bob', text: secret, receivedAt: 0 },
  } as CoreEvent;

  // Hidden tab, or another group open: notified, by label only.
  expect(noticeFor(message, context('g1'), true)).toEqual({ title: 'New message in Tuesday group', group: 'g1' });
  expect(noticeFor(message, context('g2'), false)).toEqual({ title: 'New message in Tuesday group', group: 'g1' });
  expect(noticeFor(urgent, context(undefined), true)).toEqual({
    title: 'Someone asked for a facilitator in Tuesday group',
    group: 'g1',
  });
  // Looking at that group: nothing.
  expect(noticeFor(message, context('g1'), false)).toBeUndefined();
  expect(noticeFor(urgent, context('g1'), false)).toBeUndefined();
  // Nothing of the text or the sender, whatever is shown.
  for (const notice of [noticeFor(message, context('g2'), true), noticeFor(urgent, context('g2'), true)]) {
    expect(JSON.stringify(notice)).not.toContain('relapsed');
    expect(JSON.stringify(notice)).not.toContain('Bob');
  }
  // Other events notify nothing; one tag per group.
  expect(noticeFor({ type: 'synced' } as CoreEvent, context(undefined), true)).toBeUndefined();
  expect(notificationTag('g1')).toBe('confide:g1');
  expect(notificationTag('g1')).not.toBe(notificationTag('g2'));
});
