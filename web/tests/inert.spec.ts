// What the worker does to everything the core hands a tab (sdk/inert.ts), with client-web's own
// `sanitizeForDisplay` (the built wasm, no browser): every string comes out inert, in arrays and
// at any depth. It used to make inert only the values of a list of "text" members, so a list of
// names (`looksLike`), a map's values or anything nested past 16 levels reached the page as the
// server sent it; and nesting deeper than its limit passed through untouched.

import { readFileSync } from 'node:fs';

import { initSync, sanitizeForDisplay } from '../src/wasm-pkg/confide_client_web.js';
import { MAX_DEPTH, makeInert, TOO_DEEP } from '../src/sdk/inert.ts';
import { expect, test } from './fixtures.ts';

/** Right-to-left override: shows "txt.exe" as "exe.txt". */
const RLO = '\u202E';
/** C0 escape and C1 CSI: terminal escape sequences start with them. */
const ESC = '\u001B';
const CSI = '\u009B';

test.beforeAll(() => {
  initSync({ module: readFileSync(new URL('../src/wasm-pkg/confide_client_web_bg.wasm', import.meta.url)) });
});

/** `makeInert` with the worker's rule. */
const inert = (value: unknown) => makeInert(value, (text) => sanitizeForDisplay(text));

/** Every string anywhere in `value` (members' names too). */
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value instanceof Map) return [...value].flatMap(([key, item]) => [...strings(key), ...strings(item)]);
  if (Array.isArray(value) || value instanceof Set) return [...value].flatMap(strings);
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([key, item]) => [key, ...strings(item)]);
  }
  return [];
}

/** Whether `text` holds a bidi control or a C0/C1 control other than a line break. */
const unsafe = (text: string) => /[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/.test(text);

test('a bidi override or a control inside an array item comes out inert', () => {
  const request = {
    user: 'dXNlcg',
    displayName: 'Alice',
    looksLike: [`Ali${RLO}ecg`, `Bob${ESC}[2J`],
    sharedGroups: [[`deep${CSI}31m`]],
  };
  const shown = inert(request) as typeof request;
  expect(shown.looksLike).toEqual(['Ali\uFFFDecg', 'Bob\uFFFD[2J']);
  expect(shown.sharedGroups).toEqual([['deep\uFFFD31m']]);
  // Ids and plain text pass as they are; the input is not changed.
  expect(shown.user).toBe('dXNlcg');
  expect(shown.displayName).toBe('Alice');
  expect(request.looksLike[0]).toBe(`Ali${RLO}ecg`);
  // A string on its own, a map's keys and values, a set's items and members' names too.
  expect(inert(`a${RLO}b`)).toBe('a\uFFFDb');
  const details = inert({ details: new Map([[`k${RLO}`, [`v${ESC}`]]]), tags: new Set([`t${CSI}`]), [`n${RLO}`]: 1 });
  expect(strings(details).filter(unsafe)).toEqual([]);
  // An emoji joined by zero-width joiners, and line breaks, are kept.
  expect(inert(['👩\u200D👧', 'two\nlines'])).toEqual(['👩\u200D👧', 'two\nlines']);
});

test('a bidi override or a control nested deeper than any limit never comes out unsanitised', () => {
  for (const depth of [5, 17, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 200]) {
    let value: unknown = { text: `pay ${RLO}gnp.exe`, list: [`bell${ESC}`, `csi${CSI}`] };
    for (let level = 0; level < depth; level += 1) value = level % 2 === 0 ? { inner: value } : [value];
    const shown = inert(value);
    const found = strings(shown);
    expect(found.filter(unsafe), `at depth ${depth}`).toEqual([]);
    if (depth < MAX_DEPTH - 1) {
      // Within the limit the text is there, made inert.
      expect(found, `at depth ${depth}`).toContain('pay \uFFFDgnp.exe');
    } else {
      // Past it, what is too deep is replaced as a whole.
      expect(found, `at depth ${depth}`).toContain(TOO_DEEP);
    }
  }
});
