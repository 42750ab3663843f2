// What the worker does to everything the core hands a tab: every string in it, at any depth, made
// inert with client-web's `sanitizeForDisplay`, so that no page can show someone else's text
// (or the server's) without it. Kept apart from worker.ts, which needs a worker and the wasm, so
// that the rule can be tested on its own (tests/inert.spec.ts).

/**
 * How deep a value may nest before what is deeper is replaced by {@link TOO_DEEP}. The core's
 * results and events nest a few levels (an event, a message, its reactions); anything near this
 * deep came from something that should not be trusted to be shown.
 */
export const MAX_DEPTH = 32;

/**
 * What replaces a part of a value nested deeper than {@link MAX_DEPTH}: the character
 * `sanitizeForDisplay` puts where something was taken out, so nothing unsanitised passes.
 */
export const TOO_DEEP = '\uFFFD';

/**
 * `value` with every string made inert by `clean` (client-web's `sanitizeForDisplay`): object
 * members and their names, array items, `Map` keys and values, `Set` items, and `value` itself
 * when it is a string. There is no list of "text" fields to keep up to date: every string is
 * treated as someone else's text. Ids, codes and invite links are ASCII the core wrote, which
 * `clean` returns unchanged, so they pass as they are.
 *
 * Fails closed: what nests deeper than {@link MAX_DEPTH} becomes {@link TOO_DEEP}. Binary data
 * (`ArrayBuffer`, typed arrays) holds no text and is kept; anything else that is not a plain
 * value is rebuilt from its own members, as `postMessage` would copy it.
 */
export function makeInert(value: unknown, clean: (text: string) => string, depth = 0): unknown {
  if (typeof value === 'string') return clean(value);
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (depth >= MAX_DEPTH) return TOO_DEEP;
  const inner = (item: unknown) => makeInert(item, clean, depth + 1);
  if (Array.isArray(value)) return value.map(inner);
  if (value instanceof Map) {
    return new Map([...value].map(([key, item]) => [inner(key), inner(item)] as const));
  }
  if (value instanceof Set) return new Set([...value].map(inner));
  // A member's name may be someone else's text too (a map the core passes on as an object);
  // `fromEntries` defines every member as data, so not even `__proto__` can set a prototype.
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [clean(key), inner(item)]));
}
