// The service worker, built to /sw.js (vite.config.ts). It makes the installed app start from
// code this browser already checked, and it announces a new release instead of applying it:
//
// - Install: fetch /asset-manifest.json, then every file it lists (the app shell; not /sw.js,
//   which the browser keeps itself), check each file's size and SHA-256 against the manifest, and
//   only when every one matches put them all, with the manifest, into one cache named after this
//   worker's bundle hash. A file that does not match is never cached, and the install fails: the
//   browser keeps the version it has (or none).
// - Fetch: a same-origin GET for a path of the shell (`/` is `/index.html`) is answered from that
//   cache; anything else goes to the network untouched and is never stored. The websocket never
//   passes through a service worker, and nothing the core sends or receives is ever cached.
// - Update: the browser fetches /sw.js again (no-cache) on navigations; every change to the app's
//   sources changes this file's bytes (the bundle hash is compiled in). The new worker installs
//   (checking its own shell as above) and then WAITS: it never calls skipWaiting on its own. The
//   page shows "A new version of Confide is ready — reload to use it" (UpdateBanner.svelte), and
//   only that button's message makes it take over. Two versions of the app then never run side
//   by side on one profile by surprise (plan §3: two cores on one store would reuse nonces).
//
// It imports nothing at run time (sw-protocol.ts is types only), so it is one self-contained file.

import type { ServiceWorkerDescription, ShellCheck, ToServiceWorker } from './sw-protocol.ts';

const sw = self as unknown as ServiceWorkerGlobalScope;

/** Where the build's manifest is served: `{"/path": {"sha256": hex, "size": bytes}}`. */
const MANIFEST_PATH = '/asset-manifest.json';
/** This worker's own script, which the browser caches and checks itself. */
const SELF_PATH = '/sw.js';
/** What `/` serves. */
const INDEX_PATH = '/index.html';
/** Every cache this worker makes starts with this, so that older versions' are found. */
const CACHE_PREFIX = 'confide-shell-';
/** This version's cache: one per bundle, so a waiting version never touches the active one's. */
const CACHE_NAME = `${CACHE_PREFIX}${__CONFIDE_BUNDLE_HASH__}`;
/** The scratch cache of a `verify-shell` check (never read by the fetch handler). */
const VERIFY_CACHE = 'confide-verify';
/** Response headers not copied into the cache: the body is stored decoded, at its own length. */
const DROPPED_HEADERS = ['content-encoding', 'content-length'];

/** One entry of the manifest. */
interface Entry {
  sha256: string;
  size: number;
}

/** Lowercase hex SHA-256 of `bytes`. */
async function sha256Hex(bytes: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** The manifest's entries, or an error naming what is wrong with it. */
function parseManifest(bytes: ArrayBuffer): Map<string, Entry> {
  const parsed: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('the manifest is not a JSON object');
  }
  const entries = new Map<string, Entry>();
  for (const [path, value] of Object.entries(parsed as Record<string, unknown>)) {
    const entry = value as Partial<Entry> | null;
    if (
      !path.startsWith('/') ||
      path.startsWith('//') ||
      typeof entry?.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/i.test(entry.sha256) ||
      typeof entry.size !== 'number'
    ) {
      throw new Error(`the manifest's entry ${JSON.stringify(path)} is not a path with a sha256 and a size`);
    }
    entries.set(path, { sha256: entry.sha256.toLowerCase(), size: entry.size });
  }
  if (!entries.has(INDEX_PATH)) throw new Error(`the manifest does not list ${INDEX_PATH}`);
  return entries;
}

/** A response to store: the bytes as received, with the server's headers (CSP included). */
function storable(bytes: ArrayBuffer, from: Response): Response {
  const headers = new Headers(from.headers);
  for (const name of DROPPED_HEADERS) headers.delete(name);
  return new Response(bytes, { status: 200, statusText: 'OK', headers });
}

/**
 * Fetches every file `manifestBytes` lists (the app shell, less this worker's own script), checks
 * each one's size and SHA-256, and only if every one matches puts them all, with the manifest,
 * into the cache `cacheName` (emptied first). Otherwise nothing is cached: the cache is deleted
 * and the paths that did not match are returned.
 */
async function precacheShell(
  manifestBytes: ArrayBuffer,
  manifestHeaders: Headers,
  cacheName: string,
): Promise<{ refused: string[] }> {
  const entries = parseManifest(manifestBytes);
  const manifest = new Response(manifestBytes, { status: 200, headers: manifestHeaders });
  const checked: [string, Response][] = [[MANIFEST_PATH, storable(manifestBytes, manifest)]];
  const refused: string[] = [];
  await Promise.all(
    [...entries].map(async ([path, entry]) => {
      if (path === SELF_PATH) return;
      try {
        const response = await fetch(path, { cache: 'no-cache', redirect: 'error' });
        const bytes = await response.arrayBuffer();
        if (!response.ok || bytes.byteLength !== entry.size || (await sha256Hex(bytes)) !== entry.sha256) {
          refused.push(path);
          return;
        }
        checked.push([path, storable(bytes, response)]);
      } catch {
        refused.push(path);
      }
    }),
  );
  await caches.delete(cacheName);
  if (refused.length > 0) {
    // Nothing of this version is kept: a shell with one file missing or changed is no shell.
    return { refused: refused.sort() };
  }
  const cache = await caches.open(cacheName);
  await Promise.all(checked.map(([path, response]) => cache.put(path, response)));
  return { refused: [] };
}

/** The install: the server's manifest and shell into this version's cache, or a failed install. */
async function precache(): Promise<void> {
  const response = await fetch(MANIFEST_PATH, { cache: 'no-cache', redirect: 'error' });
  if (!response.ok) throw new Error(`${MANIFEST_PATH} answered ${response.status}`);
  const { refused } = await precacheShell(await response.arrayBuffer(), response.headers, CACHE_NAME);
  if (refused.length > 0) {
    throw new Error(`not installed: ${refused.join(', ')} did not match the manifest`);
  }
}

/**
 * Runs the install's check against `manifestBytes` (a page's `verify-shell` message) into a
 * scratch cache that is deleted before answering; answers which paths did not match and which
 * the check had cached. It changes nothing this worker serves, and fetches only this origin's
 * paths: what any page of the app could fetch itself.
 */
async function verifyShell(manifestBytes: ArrayBuffer): Promise<ShellCheck> {
  try {
    const { refused } = await precacheShell(manifestBytes, new Headers(), VERIFY_CACHE);
    const cache = await caches.open(VERIFY_CACHE);
    const cached = (await cache.keys()).map((request) => new URL(request.url).pathname).sort();
    return { kind: 'shell-check', refused, cached };
  } catch (error) {
    return { kind: 'shell-check', refused: [], cached: [], error: String(error) };
  } finally {
    await caches.delete(VERIFY_CACHE);
  }
}

/** The release hash of the shell this worker holds, if it holds one. */
async function releaseHash(): Promise<string | undefined> {
  const cache = await caches.open(CACHE_NAME);
  const manifest = await cache.match(MANIFEST_PATH);
  return manifest === undefined ? undefined : sha256Hex(await manifest.arrayBuffer());
}

sw.addEventListener('install', (event) => {
  // No skipWaiting here, ever: see the top of this file.
  event.waitUntil(precache());
});

sw.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME) await caches.delete(name);
      }
      // Pages opened before any version was installed get the shell too; a page of an older
      // version reloads when its controller changes (service-worker.ts), which happens only after
      // the person asked for the update.
      await sw.clients.claim();
    })(),
  );
});

sw.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== sw.location.origin) return;
  const path = url.pathname === '/' ? INDEX_PATH : url.pathname;
  if (path === SELF_PATH) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE_NAME);
      const cached = await cache.match(path);
      // Not part of the shell (or no shell yet): the network, and nothing is stored.
      return cached ?? fetch(request);
    })(),
  );
});

sw.addEventListener('message', (event) => {
  const message = event.data as ToServiceWorker | null;
  if (typeof message !== 'object' || message === null) return;
  if (message.kind === 'skip-waiting') {
    event.waitUntil(sw.skipWaiting());
  } else if (message.kind === 'verify-shell') {
    const port = event.ports[0];
    if (port === undefined || !(message.manifest instanceof ArrayBuffer)) return;
    event.waitUntil(verifyShell(message.manifest).then((result) => port.postMessage(result)));
  } else if (message.kind === 'describe') {
    const port = event.ports[0];
    if (port === undefined) return;
    event.waitUntil(
      releaseHash().then((hash) => {
        const description: ServiceWorkerDescription = {
          kind: 'description',
          version: __CONFIDE_VERSION__,
          bundleHash: __CONFIDE_BUNDLE_HASH__,
          releaseHash: hash,
        };
        port.postMessage(description);
      }),
    );
  }
});

sw.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(
    (async () => {
      const windows = await sw.clients.matchAll({ type: 'window', includeUncontrolled: true });
      const open = windows[0];
      if (open !== undefined) {
        await open.focus();
      } else {
        await sw.clients.openWindow('/');
      }
    })(),
  );
});
