// The worker that owns the core: a SharedWorker (one for every tab of the profile) or, where the
// browser has none, each tab's dedicated Worker. It loads the wasm (checking its integrity),
// takes the profile's Web Lock, opens ONE `ConfideCore` if it got the lock, and serves every
// tab's port: calls in, replies and core events out (protocol.ts).
//
// The Web Lock is what keeps a profile to one core: two cores on one store would reuse sender-key
// iterations, that is AEAD nonces (plan §3). A second worker (another bundle version's
// SharedWorker, or a second dedicated Worker) does not get the lock and answers every call with
// `elsewhere`, which the page shows as "open in another tab".

import init, * as wasm from '../wasm-pkg/confide_client_web.js';
import wasmUrl from '../wasm-pkg/confide_client_web_bg.wasm?url';
import {
  DEFAULT_DB_NAME,
  PROTOCOL_VERSION,
  coreLockName,
  isCoreError,
  type CoreError,
  type CoreEvent,
  type Hello,
  type Push,
  type ToWorker,
} from './protocol.ts';
import { makeInert } from './inert.ts';

/** What the worker needs of client-web's `ConfideCore` class (protocol.ts types the rest). */
interface CoreClass {
  open(
    options: { dbName: string; serverUrl: string },
    onEvent: (event: unknown) => void,
  ): Promise<object>;
  prototype: object;
}

/** A tab's end: a SharedWorker port, or the dedicated worker's own scope. */
interface Port {
  postMessage(message: Push, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<unknown>) => void): void;
}

/** The worker, once started: the core (if it opened) and its hello. */
interface Started {
  hello: Omit<Hello, 'kind'>;
  core: object | undefined;
  methods: ReadonlySet<string>;
}

const scope = self as unknown as (SharedWorkerGlobalScope | DedicatedWorkerGlobalScope) & {
  name: string;
};

/** The profile's database: the worker's name is `confide:<dbName>` (protocol.ts). */
const dbName = scope.name.startsWith('confide:') ? scope.name.slice('confide:'.length) : DEFAULT_DB_NAME;

/** The tabs' ports, for events. */
const ports = new Set<Port>();

/** client-web's `ConfideCore`, if this build exports it. */
function coreClass(): CoreClass | undefined {
  // Looked up by name at run time, as a build without the class is valid too (the bundler
  // would warn about a static `wasm.ConfideCore`).
  const candidate: unknown = Reflect.get(wasm, 'ConfideCore');
  if (typeof candidate !== 'function') return undefined;
  const open = (candidate as { open?: unknown }).open;
  return typeof open === 'function' ? (candidate as unknown as CoreClass) : undefined;
}

/** The core's method names: functions on its prototype, less wasm-bindgen's memory management. */
function methodNames(klass: CoreClass): string[] {
  return Object.entries(Object.getOwnPropertyDescriptors(klass.prototype))
    .filter(
      ([name, descriptor]) =>
        typeof descriptor.value === 'function' &&
        name !== 'constructor' &&
        name !== 'free' &&
        !name.startsWith('__'),
    )
    .map(([name]) => name)
    .sort();
}

/**
 * `value` with every string in it made inert with client-web's `sanitizeForDisplay` (the CLI's
 * rule: bidi overrides and isolates, controls and invisibles become U+FFFD), at any depth, before
 * any tab sees it: results, events and errors alike, so no page can forget to (inert.ts).
 */
function inert<T>(value: T): T {
  return makeInert(value, (text) => wasm.sanitizeForDisplay(text)) as T;
}

/**
 * Methods whose result is only the person's own text, never anyone else's (not made inert): a
 * draft, and the safety plan (kept only on the person's own devices), returned exactly so that
 * saving the plan again never changes an entry the person did not touch.
 */
const OWN_TEXT_METHODS: ReadonlySet<string> = new Set(['draft', 'safetyPlan']);

/** Methods that resolve to a message this tab sent, which the other tabs hear of as `sent`. */
const SENDING_METHODS: ReadonlySet<string> = new Set(['sendText', 'answerRound', 'passRound']);

/**
 * `acceptAgreement` names the text that was shown, and the tab was shown the sanitised text: if
 * it is exactly the sanitised form of the agreement the core holds, the core gets the original.
 */
async function restoreAgreementText(core: object, params: unknown): Promise<unknown> {
  if (typeof params !== 'object' || params === null) return params;
  const { group, version, text } = params as { group?: unknown; version?: unknown; text?: unknown };
  if (typeof group !== 'string' || typeof text !== 'string') return params;
  const pinned = (core as Record<string, (p: unknown) => Promise<unknown>>)['pinned'];
  const held = (await pinned?.call(core, { group })) as
    | { agreement?: { version: number; text: string } }
    | undefined;
  const agreement = held?.agreement;
  if (agreement !== undefined && agreement.version === version && wasm.sanitizeForDisplay(agreement.text) === text) {
    return { ...(params as object), text: agreement.text };
  }
  return params;
}

/** A thrown or rejected value as the plain error the protocol carries. */
function toCoreError(thrown: unknown, fallback: string): CoreError {
  if (isCoreError(thrown)) {
    const error: CoreError = { code: thrown.code, message: thrown.message };
    if (typeof thrown.retryAfterMs === 'number') error.retryAfterMs = thrown.retryAfterMs;
    return error;
  }
  const detail = thrown instanceof Error ? thrown.message : String(thrown);
  return { code: 'internal', message: `${fallback}: ${detail}` };
}

/**
 * Requests the Web Lock without waiting: `true` and held until the worker ends, or `false` if
 * another worker holds it.
 */
function takeLock(name: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    navigator.locks
      .request(name, { ifAvailable: true }, (lock) => {
        if (lock === null) {
          resolve(false);
          return undefined;
        }
        resolve(true);
        // Never settles: the lock is held for the worker's whole life.
        return new Promise<never>(() => {});
      })
      .catch(reject);
  });
}

/** A start-up failure told in our own words only, so the page may show them as they are. */
class StartFailure {
  readonly code = 'worker_failed';
  constructor(readonly message: string) {}
}

/** Where the app's host names the relay, when that is not the host itself (server/src/web.rs). */
const WEB_CONFIG_PATH = '/web-config.json';
/** The host's last answer at {@link WEB_CONFIG_PATH} (deleted with the rest of `confide-*`). */
const RELAY_CACHE = 'confide-relay';
/** The loopback names a relay may be named by with plain `ws:` (for development). */
const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * The relay to open the core on: the one this origin names in `/web-config.json` (README, "Hosting
 * the app on its own origin"), or this origin itself when that answers 404. Anything else (no
 * answer, another status, a relay that is not `wss:`) throws the worker's fatal error, so the page
 * says why instead of the app talking to a server nobody chose.
 */
async function relayUrl(): Promise<string> {
  const fail = (why: string): never => {
    throw new StartFailure(`This site's relay setting (${WEB_CONFIG_PATH}) ${why}.`);
  };
  let response: Response | undefined;
  try {
    response = await fetch(WEB_CONFIG_PATH, { cache: 'no-store', credentials: 'omit', redirect: 'error' });
    if (response.ok || response.status === 404) {
      const answer = response.clone();
      await caches.open(RELAY_CACHE).then((cache) => cache.put(WEB_CONFIG_PATH, answer), () => undefined);
    }
  } catch {
    // No answer at all (the host is down, or the device offline): the host's last answer, so that
    // an installed app still starts, on the relay it used before; never a guess.
    response = await caches.open(RELAY_CACHE).then((cache) => cache.match(WEB_CONFIG_PATH), () => undefined);
    if (response === undefined) fail('could not be read: the site did not answer');
  }
  if (response === undefined) return fail('could not be read');
  if (response.status === 404) return `${location.protocol === 'http:' ? 'ws' : 'wss'}://${location.host}/`;
  if (!response.ok) fail(`could not be read: the server answered ${response.status}`);
  let relay: unknown;
  try {
    relay = ((await response.json()) as { relay?: unknown } | null)?.relay;
  } catch {
    fail('is not JSON');
  }
  let url: URL | undefined;
  try {
    url = typeof relay === 'string' ? new URL(relay) : undefined;
  } catch {
    url = undefined;
  }
  const allowed =
    url !== undefined &&
    (url.protocol === 'wss:' || (url.protocol === 'ws:' && LOOPBACK_HOSTS.has(url.hostname))) &&
    url.username === '' &&
    url.password === '' &&
    url.pathname === '/' &&
    url.search === '' &&
    url.hash === '';
  if (url === undefined || !allowed) return fail('does not name a wss:// relay');
  return url.href;
}

async function start(): Promise<Started> {
  if (!('locks' in navigator)) {
    throw { code: 'worker_failed', message: 'this browser has no Web Locks (is the page served over https?)' };
  }
  await init({ module_or_path: fetch(wasmUrl, { integrity: __CONFIDE_WASM_INTEGRITY__ }) });
  const hello: Omit<Hello, 'kind'> = {
    protocol: PROTOCOL_VERSION,
    version: wasm.version(),
    bundleHash: __CONFIDE_BUNDLE_HASH__,
    lock: (await takeLock(coreLockName(dbName))) ? 'held' : 'elsewhere',
    methods: [],
  };
  const klass = coreClass();
  if (klass === undefined) {
    return { hello, core: undefined, methods: new Set() };
  }
  // The methods are listed even without a core, so that a tab's calls reach the worker and
  // reject with the reason (`elsewhere`, or why the core did not open).
  hello.methods = methodNames(klass);
  const methods = new Set(hello.methods);
  if (hello.lock === 'elsewhere') {
    return { hello, core: undefined, methods };
  }
  // Outside the try: a relay setting that cannot be read stops the start (`fatal`), shown as
  // "Confide could not start", rather than opening the core on another server.
  const serverUrl = await relayUrl();
  try {
    const core = await klass.open({ dbName, serverUrl }, (event) => {
      const shown = inert(event);
      for (const port of ports) port.postMessage({ kind: 'event', event: shown as never });
    });
    return { hello, core, methods };
  } catch (thrown) {
    hello.openError = inert(toCoreError(thrown, 'the core could not be opened'));
    return { hello, core: undefined, methods };
  }
}

const started = start();

/** Runs one call on the core and answers it. */
async function answer(port: Port, call: { id: number; method: string; params: unknown }) {
  const reply = (result: { ok: true; value: unknown } | { ok: false; error: CoreError }) =>
    port.postMessage({ kind: 'reply', id: call.id, ...result });
  const { hello, core, methods } = await started;
  if (!methods.has(call.method)) {
    reply({ ok: false, error: { code: 'unknown_method', message: `the core has no method ${call.method}` } });
    return;
  }
  if (core === undefined) {
    reply({
      ok: false,
      error:
        hello.lock === 'elsewhere'
          ? { code: 'elsewhere', message: 'Confide is open in another tab or an older version is still running' }
          : (hello.openError ?? { code: 'no_core', message: 'this build of Confide has no core' }),
    });
    return;
  }
  const method = (core as Record<string, (params: unknown) => unknown>)[call.method];
  try {
    const params =
      call.method === 'acceptAgreement' ? await restoreAgreementText(core, call.params) : call.params;
    const result: unknown = await method?.call(core, params);
    // A draft is the person's own words, which only this profile wrote: returned exactly, so
    // that their own right-to-left marks and the like survive a reload.
    const value: unknown = OWN_TEXT_METHODS.has(call.method) ? result : inert(result);
    reply({ ok: true, value });
    if (SENDING_METHODS.has(call.method)) {
      // The other tabs hear of a message this tab sent as they hear of one sent later from the
      // outbox: the core answers only the caller, and every tab shows the same conversation.
      const event = { type: 'sent', message: value } as unknown as CoreEvent;
      for (const other of ports) if (other !== port) other.postMessage({ kind: 'event', event });
    }
  } catch (thrown) {
    reply({ ok: false, error: inert(toCoreError(thrown, `${call.method} failed`)) });
  } finally {
    // The tab transferred the passphrase; nothing keeps it past the call.
    const passphrase = (call.params as { passphrase?: unknown } | null)?.passphrase;
    if (passphrase instanceof Uint8Array) passphrase.fill(0);
  }
}

/** Serves one tab: hello first, then its calls. */
function serve(port: Port) {
  ports.add(port);
  port.addEventListener('message', (event) => {
    const message = event.data as ToWorker | null;
    if (typeof message !== 'object' || message === null) return;
    if (message.kind === 'bye') {
      ports.delete(port);
    } else if (message.kind === 'call' && typeof message.id === 'number' && typeof message.method === 'string') {
      void answer(port, message);
    }
  });
  started.then(
    ({ hello }) => port.postMessage({ kind: 'hello', ...hello }),
    (thrown: unknown) => {
      // The wasm may be what failed, so its sanitising is not at hand: the page gets the code
      // and our own words only, and the detail stays in this worker's console.
      const { code } = toCoreError(thrown, 'Confide could not start');
      console.error('Confide could not start', thrown);
      const message = thrown instanceof StartFailure ? thrown.message : 'Confide could not start';
      port.postMessage({ kind: 'fatal', error: { code, message } });
    },
  );
}

if ('onconnect' in scope) {
  scope.addEventListener('connect', (event) => {
    const port = (event as MessageEvent).ports[0];
    if (port === undefined) return;
    serve(port);
    port.start();
  });
} else {
  serve(scope as DedicatedWorkerGlobalScope);
}
