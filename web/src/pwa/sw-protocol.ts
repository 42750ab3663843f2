// The messages between the page and the service worker (src/pwa/sw.ts). Types only: the service
// worker is built self-contained (it imports nothing at run time), so nothing here may be a value.

/** Page → service worker. */
export type ToServiceWorker =
  /** Asks the worker which release it holds; the answer goes to the message's port. */
  | { kind: 'describe' }
  /**
   * The person pressed "reload" on the update banner: the waiting worker takes over. Sent only
   * from that button; the worker never activates itself over an older version.
   */
  | { kind: 'skip-waiting' }
  /**
   * Runs the install's check (every listed file fetched and compared with its size and SHA-256)
   * against `manifest`, the bytes of an `asset-manifest.json`, in a scratch cache that is deleted
   * before the answer ({@link ShellCheck}) goes to the message's port. For tests, and for a page
   * that wants to check the server against a published manifest.
   */
  | { kind: 'verify-shell'; manifest: ArrayBuffer };

/** The service worker's answer to `describe`. */
export interface ServiceWorkerDescription {
  kind: 'description';
  /** The workspace version the worker was built from. */
  version: string;
  /** The bundle hash (SHA-256 of the sources) the worker was built from. */
  bundleHash: string;
  /**
   * SHA-256 (hex) of the `asset-manifest.json` bytes the worker precached (the release hash), or
   * `undefined` while it holds no verified shell.
   */
  releaseHash: string | undefined;
}

/** The service worker's answer to `verify-shell`. */
export interface ShellCheck {
  kind: 'shell-check';
  /** The listed paths whose file did not match (or could not be fetched), sorted. */
  refused: string[];
  /** The paths the check had cached when it finished (none when anything was refused), sorted. */
  cached: string[];
  /** Why the manifest could not be checked at all (not JSON, no /index.html, …). */
  error?: string;
}
