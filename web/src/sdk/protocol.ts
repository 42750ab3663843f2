// The messages between a tab and the worker that owns the core (plan §3), and the typed API the
// tab sees. The API is not written out here: it is derived from the `ConfideCore` class in the
// wasm-bindgen declarations (src/wasm-pkg/confide_client_web.d.ts), so every method client-web
// exports is callable from a tab, with its generated parameter and result types, and the
// TypeScript cannot drift from the Rust.

import type * as Wasm from '../wasm-pkg/confide_client_web.js';

/** The version of this message protocol; a tab and a worker of different versions never talk. */
export const PROTOCOL_VERSION = 1;

/** The IndexedDB database (one profile) used when the caller names none. */
export const DEFAULT_DB_NAME = 'confide-v1';

/** The Web Lock that makes one core per profile a fact rather than a hope (plan §3). */
export function coreLockName(dbName: string): string {
  return `confide-core:${dbName}`;
}

/** The worker's name: one SharedWorker per profile (and per bundle, as its URL is hashed). */
export function workerName(dbName: string): string {
  return `confide:${dbName}`;
}

/** The `ConfideCore` class, or `undefined` while client-web does not export it. */
type CoreClass = typeof Wasm extends { ConfideCore: infer C } ? C : undefined;

/** A `ConfideCore` instance, or an empty object type while client-web has none. */
type CoreInstance = CoreClass extends { prototype: infer P } ? P : Record<never, never>;

/** Members of the core that are not API methods: wasm-bindgen's memory management. */
type NotApi = 'free' | 'constructor';

/** The names of the core's methods, each callable from a tab. */
export type MethodName = {
  [K in keyof CoreInstance]: K extends string
    ? K extends NotApi
      ? never
      : CoreInstance[K] extends (...args: never[]) => unknown
        ? K
        : never
    : never;
}[keyof CoreInstance];

/**
 * What a tab can call: every method of `ConfideCore`, each returning a Promise of what the core's
 * method returns (synchronous ones such as `profileState()` too, as they run in the worker).
 */
export type Api = {
  [K in MethodName]: CoreInstance[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};

/** An event from the core (client-web's `CoreEvent`), as `ConfideCore.open` passes it on. */
export type CoreEvent = CoreClass extends {
  open(options: never, onEvent: (event: infer E) => void): unknown;
}
  ? E
  : never;

/**
 * Why a call failed: the core's stable error code (`ClientError::code()` or one of client-web's,
 * such as `"wrong_passphrase"`) or one of the SDK's {@link SdkErrorCode}, and a message for people.
 */
export interface CoreError {
  code: string;
  message: string;
  retryAfterMs?: number;
}

/** Error codes the SDK itself gives, besides the core's. */
export type SdkErrorCode =
  /** Another worker holds this profile's core (another tab, or an older version). */
  | 'elsewhere'
  /** The core could not be opened, or client-web exports no core. */
  | 'no_core'
  /** The method is not one of the core's. */
  | 'unknown_method'
  /** The worker failed to start or stopped answering. */
  | 'worker_failed'
  /** The worker belongs to another bundle or protocol version. */
  | 'version_mismatch'
  /** The core threw something that is not a Confide error (a bug). */
  | 'internal';

/** Whether this tab's worker holds the profile's Web Lock, and so owns its core. */
export type LockState = 'held' | 'elsewhere';

/** The worker's greeting, the first message on every port. */
export interface Hello {
  kind: 'hello';
  /** {@link PROTOCOL_VERSION} of the worker. */
  protocol: number;
  /** client-web's `version()`: the release. */
  version: string;
  /** The worker's bundle hash; a tab whose own differs does not talk to it. */
  bundleHash: string;
  /** Whether this worker owns the profile's core. */
  lock: LockState;
  /**
   * The core's methods (empty while client-web exports no core). Listed also when this worker
   * has no core (`lock: "elsewhere"`, or `openError`): each call then rejects with the reason.
   */
  methods: string[];
  /** Why the core could not be opened, if it could not. */
  openError?: CoreError;
}

/** Messages from the worker to a tab. */
export type Push =
  | Hello
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: CoreError }
  | { kind: 'event'; event: CoreEvent }
  /** The worker could not start (the wasm did not load, no Web Locks): nothing will work. */
  | { kind: 'fatal'; error: CoreError };

/** Messages from a tab to the worker. */
export type ToWorker =
  | { kind: 'call'; id: number; method: MethodName; params: unknown }
  /** The tab is going away: stop sending to its port. */
  | { kind: 'bye' };

/** Narrows an unknown rejection value to a {@link CoreError}. */
export function isCoreError(value: unknown): value is CoreError {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}
