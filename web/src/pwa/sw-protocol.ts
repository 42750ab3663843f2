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
  | { kind: 'skip-waiting' };

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
