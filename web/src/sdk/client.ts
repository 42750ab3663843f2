// The SDK's page side: `createConfide()` starts (or joins) the worker that owns the core and
// returns a typed proxy whose methods are the core's. See README.md in this directory.
//
// Why a small RPC of our own rather than Comlink: the port carries more than calls (the worker's
// hello with the versions and the Web Lock state, core events fanned out to every tab, a fatal
// start-up error), and the plan's wire format (protocol.ts) is what a reviewer reads. Comlink
// would add a second channel per event listener (`Comlink.proxy`), and its generic get/set/apply
// over any property path gives a tab more reach into the worker than "call one of the core's
// methods with one params object". The typing Comlink gives (`Remote<T>`) is the mapped type
// `Api` in protocol.ts, derived from the generated `ConfideCore` declarations.

import workerUrl from './worker.ts?worker&url';
import {
  DEFAULT_DB_NAME,
  PROTOCOL_VERSION,
  workerName,
  type Api,
  type CoreError,
  type CoreEvent,
  type Hello,
  type MethodName,
  type Push,
  type SdkErrorCode,
  type ToWorker,
} from './protocol.ts';
import { workerScriptUrl } from './trusted-types.ts';

export type { Api, CoreError, CoreEvent, Hello, LockState, SdkErrorCode } from './protocol.ts';
export { isCoreError } from './protocol.ts';

/** Options of {@link createConfide}. */
export interface ConfideOptions {
  /** The IndexedDB database holding the profile; `"confide-v1"` unless given. */
  dbName?: string;
  /** `"shared"` (the default where the browser has SharedWorker) or `"dedicated"`. */
  worker?: 'shared' | 'dedicated';
}

/** What every {@link Confide} has besides the core's methods. */
export interface ConfideSession {
  /** The worker's greeting: its version, bundle hash, and whether it owns the core. */
  readonly hello: Hello;
  /** Whether the worker is a SharedWorker (one for every tab) or this tab's own Worker. */
  readonly workerKind: 'shared' | 'dedicated';
  /** Calls `listener` with every core event until the returned function is called. */
  on(listener: (event: CoreEvent) => void): () => void;
  /** Stops talking to the worker; pending calls reject with `worker_failed`. */
  close(): void;
}

/** The SDK's handle: the core's methods (each returning a Promise) and the session. */
export type Confide = Api & ConfideSession;

/** An error the SDK itself raises (the core's errors arrive as plain {@link CoreError}s). */
function sdkError(code: SdkErrorCode, message: string): CoreError {
  return { code, message };
}

/** Where the page talks to the worker: a SharedWorker's port, or a dedicated Worker itself. */
interface Endpoint {
  postMessage(message: ToWorker, transfer: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<Push>) => void): void;
  close(): void;
}

function startWorker(dbName: string, kind: 'shared' | 'dedicated'): {
  endpoint: Endpoint;
  onError: (listener: (message: string) => void) => void;
} {
  const url = workerScriptUrl(workerUrl);
  const options: WorkerOptions = { type: 'module', name: workerName(dbName) };
  if (kind === 'shared') {
    const worker = new SharedWorker(url, options);
    const port = worker.port;
    port.start();
    return {
      endpoint: {
        postMessage: (message, transfer) => port.postMessage(message, transfer),
        addEventListener: (type, listener) => port.addEventListener(type, listener),
        close: () => port.close(),
      },
      onError: (listener) =>
        worker.addEventListener('error', () => listener('the shared worker failed to start')),
    };
  }
  const worker = new Worker(url, options);
  return {
    endpoint: {
      postMessage: (message, transfer) => worker.postMessage(message, transfer),
      addEventListener: (type, listener) => worker.addEventListener(type, listener),
      close: () => worker.terminate(),
    },
    onError: (listener) =>
      worker.addEventListener('error', (event) =>
        listener(event.message || 'the worker failed to start'),
      ),
  };
}

/**
 * The buffers a call hands over instead of copying: a `passphrase` given as a `Uint8Array` is
 * transferred, so the tab keeps no copy (the worker zeroes its own once the call is done).
 */
function transferables(params: unknown): Transferable[] {
  if (typeof params === 'object' && params !== null && 'passphrase' in params) {
    const passphrase = (params as { passphrase: unknown }).passphrase;
    if (passphrase instanceof Uint8Array && passphrase.buffer instanceof ArrayBuffer) {
      return [passphrase.buffer];
    }
  }
  return [];
}

/**
 * Starts the worker that owns the profile's core (a SharedWorker, so every tab shares one core;
 * a dedicated Worker where the browser has none) and resolves once it said hello.
 *
 * It resolves also when another worker owns the core (`hello.lock === "elsewhere"`): the page
 * then shows that state, and every call rejects with `elsewhere`. It rejects with a
 * {@link CoreError} when the worker cannot start, or belongs to another bundle.
 */
export function createConfide(options: ConfideOptions = {}): Promise<Confide> {
  const dbName = options.dbName ?? DEFAULT_DB_NAME;
  const kind =
    options.worker ?? (typeof SharedWorker === 'function' ? 'shared' : 'dedicated');
  let started: ReturnType<typeof startWorker>;
  try {
    started = startWorker(dbName, kind);
  } catch (thrown) {
    // The constructor refused (Trusted Types, a wrong URL): say so instead of never answering.
    const detail = thrown instanceof Error ? thrown.message : String(thrown);
    return Promise.reject(sdkError('worker_failed', `the worker could not be started: ${detail}`));
  }
  const { endpoint, onError } = started;

  let nextId = 1;
  let closed = false;
  const pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: CoreError) => void }
  >();
  const listeners = new Set<(event: CoreEvent) => void>();

  const failAll = (error: CoreError) => {
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };

  const call = (method: MethodName, params: unknown): Promise<unknown> => {
    if (closed) return Promise.reject(sdkError('worker_failed', 'this session was closed'));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      endpoint.postMessage({ kind: 'call', id, method, params }, transferables(params));
    });
  };

  return new Promise<Confide>((resolveHello, rejectHello) => {
    let greeted = false;
    const fail = (error: CoreError) => {
      failAll(error);
      if (!greeted) rejectHello(error);
    };
    onError((message) => fail(sdkError('worker_failed', message)));

    endpoint.addEventListener('message', (event) => {
      const push = event.data;
      switch (push.kind) {
        case 'hello': {
          if (greeted) return;
          greeted = true;
          if (push.protocol !== PROTOCOL_VERSION || push.bundleHash !== __CONFIDE_BUNDLE_HASH__) {
            closed = true;
            endpoint.close();
            rejectHello(
              sdkError(
                'version_mismatch',
                `the worker runs another version of Confide (${push.version}): reload the page`,
              ),
            );
            return;
          }
          const session: ConfideSession = {
            hello: push,
            workerKind: kind,
            on(listener) {
              listeners.add(listener);
              return () => listeners.delete(listener);
            },
            close() {
              if (closed) return;
              closed = true;
              endpoint.postMessage({ kind: 'bye' }, []);
              endpoint.close();
              failAll(sdkError('worker_failed', 'this session was closed'));
            },
          };
          // One function per method the worker serves: a plain object rather than a Proxy, so
          // nothing answers to names the core does not have (a Proxy would even answer `then`).
          const methods = Object.fromEntries(
            push.methods.map((name) => [
              name,
              (params?: unknown) => call(name as MethodName, params),
            ]),
          );
          resolveHello(Object.freeze({ ...methods, ...session }) as Confide);
          return;
        }
        case 'reply': {
          const waiting = pending.get(push.id);
          if (waiting === undefined) return;
          pending.delete(push.id);
          if (push.ok) waiting.resolve(push.value);
          else waiting.reject(push.error);
          return;
        }
        case 'event':
          for (const listener of listeners) listener(push.event);
          return;
        case 'fatal':
          fail(push.error);
          return;
        default: {
          // Every Push kind is handled above; a new one fails to compile here.
          const unknown: never = push;
          return unknown;
        }
      }
    });
  });
}
