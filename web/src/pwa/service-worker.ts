// The page's side of the service worker (sw.ts): registers it through the Trusted Types policy,
// watches for a new version that is installed and waiting, and applies it only when the person
// presses "reload" on the update banner.

import { writable, type Readable } from 'svelte/store';

import { serviceWorkerScriptUrl } from '../sdk/trusted-types.ts';
import type { ServiceWorkerDescription, ToServiceWorker } from './sw-protocol.ts';

/** A new version that is installed and waiting for the person to reload. */
export interface PendingUpdate {
  /** Its version (the workspace version it was built from). */
  version: string;
  /** Its release hash (SHA-256 of its `asset-manifest.json`), hex, if it said. */
  releaseHash: string | undefined;
}

const pending = writable<PendingUpdate | undefined>(undefined);

/** The waiting version, or `undefined` (what UpdateBanner.svelte shows). */
export const pendingUpdate: Readable<PendingUpdate | undefined> = pending;

/** The waiting worker, once announced. */
let waiting: ServiceWorker | undefined;

/** Asks `worker` which release it holds. */
function describe(worker: ServiceWorker): Promise<ServiceWorkerDescription> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = (event: MessageEvent<ServiceWorkerDescription>) => resolve(event.data);
    const message: ToServiceWorker = { kind: 'describe' };
    worker.postMessage(message, [channel.port2]);
  });
}

/** Shows the banner for `worker`, installed and waiting behind the version this page runs. */
async function announce(worker: ServiceWorker): Promise<void> {
  if (waiting === worker) return;
  waiting = worker;
  const description = await describe(worker);
  if (waiting === worker) {
    pending.set({ version: description.version, releaseHash: description.releaseHash });
  }
}

/**
 * The person pressed "reload": the waiting version takes over, and every page of the app reloads
 * into it (on `controllerchange`, below). Without a waiting version it just reloads.
 */
export function applyUpdate(): void {
  if (waiting === undefined) {
    location.reload();
    return;
  }
  const message: ToServiceWorker = { kind: 'skip-waiting' };
  waiting.postMessage(message);
}

/**
 * Registers the service worker (once per page; the app calls it at start) and watches for
 * updates. Resolves to the registration, or `undefined` where the browser has no service
 * workers or refused it (the app works without one; it is then not installable offline).
 */
export async function registerServiceWorker(): Promise<ServiceWorkerRegistration | undefined> {
  if (!('serviceWorker' in navigator)) return undefined;
  const container = navigator.serviceWorker;
  let controller = container.controller;
  container.addEventListener('controllerchange', () => {
    // A page that ran under an older version reloads into the new one, so that no tab keeps old
    // code (and its worker) beside the new. The very first install takes over pages that had no
    // version: nothing to reload then.
    const had = controller;
    controller = container.controller;
    if (had !== null) location.reload();
  });
  let registration: ServiceWorkerRegistration;
  try {
    registration = await container.register(serviceWorkerScriptUrl(), {
      scope: '/',
      updateViaCache: 'none',
    });
  } catch (error) {
    console.warn('Confide: the service worker could not be registered:', error);
    return undefined;
  }
  const watch = (worker: ServiceWorker | null) => {
    if (worker === null) return;
    const check = () => {
      // Installed while another version controls the page: it waits for the person.
      if (worker.state === 'installed' && container.controller !== null) void announce(worker);
    };
    check();
    worker.addEventListener('statechange', check);
  };
  watch(registration.waiting);
  watch(registration.installing);
  registration.addEventListener('updatefound', () => watch(registration.installing));
  // Look for a new version whenever the app comes back into view (the browser also looks on
  // every navigation).
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') registration.update().catch(() => undefined);
  });
  return registration;
}

/**
 * For "forget this browser" (after the core's `forget()`): unregisters the service worker and
 * deletes the app's cached copy, so that nothing of Confide is left on this origin.
 */
export async function forgetServiceWorker(): Promise<void> {
  if ('serviceWorker' in navigator) {
    for (const registration of await navigator.serviceWorker.getRegistrations()) {
      await registration.unregister();
    }
  }
  if ('caches' in globalThis) {
    for (const name of await caches.keys()) {
      if (name.startsWith('confide-')) await caches.delete(name);
    }
  }
}
