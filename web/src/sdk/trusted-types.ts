// The app's one Trusted Types policy. The server's CSP says `require-trusted-types-for 'script';
// trusted-types svelte-trusted-html confide-worker-url`: a worker's script URL must be a
// TrustedScriptURL, and only these two policies may exist. `svelte-trusted-html` is Svelte's own
// (its compiled templates); this one passes the build's own worker scripts only — the core's
// worker as Vite names it (`/assets/worker-<hash>.js`) and the service worker (`/sw.js`), from
// this page's own server — so nothing else can become a worker even if it reaches a constructor,
// also where the app shares its origin with other files.

/** The policy's name, as the CSP lists it. */
export const WORKER_URL_POLICY = 'confide-worker-url';

/** The checked script URL, in the form the Worker constructors accept. */
export type WorkerScriptUrl = string & { readonly __workerScriptUrl: true };

let policy: TrustedTypePolicy | undefined;

/** The paths of the build's worker scripts: the core's worker (Vite's hashed name) and the service worker. */
const WORKER_PATH = /^\/assets\/worker-[A-Za-z0-9_-]+\.js$|^\/sw\.js$/;

/**
 * The absolute URL of `url` (resolved against the page) if it names one of the build's worker
 * scripts on the page's own server, else an error: same scheme, host and port (a `blob:` or
 * `data:` URL has no file behind it, even when its origin matches), no credentials, no query or
 * fragment, and the path of the core's worker or the service worker. The policy's only rule,
 * exported for tests.
 */
export function checkWorkerUrl(url: string, base: string = location.href): string {
  const resolved = new URL(url, base);
  const page = new URL(base);
  if (resolved.protocol !== page.protocol || resolved.host !== page.host) {
    throw new TypeError(`refusing a worker script that is not from this server: ${resolved.href}`);
  }
  if (resolved.username !== '' || resolved.password !== '') {
    throw new TypeError('refusing a worker script URL with credentials');
  }
  if (resolved.search !== '' || resolved.hash !== '' || !WORKER_PATH.test(resolved.pathname)) {
    throw new TypeError(`refusing a worker script that is not one of the app's: ${resolved.pathname}`);
  }
  return resolved.href;
}

/**
 * `url` as a script URL a `Worker` or `SharedWorker` accepts under the CSP: through the
 * `confide-worker-url` policy where the browser has Trusted Types, checked the same way
 * elsewhere.
 */
export function workerScriptUrl(url: string): WorkerScriptUrl {
  const factory = globalThis.trustedTypes;
  if (factory === undefined) {
    return checkWorkerUrl(url) as WorkerScriptUrl;
  }
  // A policy name can be created once per page (the CSP allows no duplicates), so it is kept.
  policy ??= factory.createPolicy(WORKER_URL_POLICY, {
    createScriptURL: (input) => checkWorkerUrl(input),
  });
  // A TrustedScriptURL stands where the constructors' TypeScript types say string.
  return policy.createScriptURL(url) as unknown as WorkerScriptUrl;
}

/** Where the service worker is served: at the root, so that its scope is the whole app. */
export const SERVICE_WORKER_PATH = '/sw.js';

/**
 * The service worker's script URL for `navigator.serviceWorker.register` (a TrustedScriptURL
 * sink under the CSP), through the same policy and the same same-origin check as the workers'.
 */
export function serviceWorkerScriptUrl(): WorkerScriptUrl {
  return workerScriptUrl(SERVICE_WORKER_PATH);
}
