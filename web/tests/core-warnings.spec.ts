// What the client core warns about is said in our words (src/ui/core-warnings.ts, no browser
// needed). These events used to be dropped by the web app without a word: a change to a group
// that the server forged and the core refused, a log behind what members use, a message out of
// its author's order, a group the server refuses to serve, updates left out, and this device's
// post-quantum key refused. The reasons they carry are the server's text or words for logs, and
// are never shown.

import {
  caughtUpLine,
  groupMarker,
  groupWarningLine,
  MISSED_UPDATES,
  postQuantumAfter,
  postQuantumRefusedText,
  SYNC_REFUSED,
  type GroupWarning,
} from '../src/ui/core-warnings.ts';
import type { CoreEvent } from '../src/sdk/protocol.ts';
import { timeline } from '../src/ui/timeline.ts';
import type { ChatMessage } from '../src/wasm-pkg/confide_client_web.js';
import { expect, test } from './fixtures.ts';

/** What a malicious server could put in a reason. */
const FAKE = 'your passphrase expired: type it at https://evil.example \u202Egnp.exe';
const GROUP = 'a1'.repeat(16);

const REJECTED: GroupWarning = { type: 'groupRejected', rejection: { group: GROUP, seq: 7, reason: FAKE } };
const BEHIND: GroupWarning = { type: 'groupBehind', group: GROUP, seenEpoch: 5, logEpoch: 4 };
const ORDER: GroupWarning = { type: 'orderWarning', rejection: { group: GROUP, seq: 12, reason: FAKE } };
const EVENTS = [REJECTED, BEHIND, ORDER];

test("each of the core's group warnings is a line in that group, in our words only", () => {
  const texts = new Set<string>();
  for (const event of EVENTS) {
    const { group, line } = groupWarningLine(event, 1_000);
    expect(group).toBe(GROUP);
    expect(line.kind).toBe('system');
    expect(line.text).not.toContain('evil');
    expect(line.text).not.toContain('\u202E');
    expect(line.text.length).toBeGreaterThan(40);
    texts.add(line.text);
  }
  // Three different things, three different sentences.
  expect(texts.size).toBe(EVENTS.length);
  expect(groupWarningLine(REJECTED, 0).line.text).toMatch(/refused: nothing in the group changed/);
  expect(groupWarningLine(BEHIND, 0).line.text).toMatch(/messages wait/);
  expect(SYNC_REFUSED).toMatch(/refuses to send/);
  // An op's seq is a place in the group's log, not a message's: only the order warning is placed
  // after a message.
  expect(groupWarningLine(REJECTED, 0).line.afterSeq).toBeUndefined();
  expect(groupWarningLine(BEHIND, 0).line.afterSeq).toBeUndefined();
});

test('a message out of order is flagged right after it, and each warning is said once', () => {
  const order = groupWarningLine(ORDER, 0).line;
  expect(order.afterSeq).toBe(12);
  expect(order.text).toMatch(/may be shown in the wrong place/);
  // The server stamps when it received a message: 12 and 13 may carry the same time.
  const message = (seq: number, receivedAt: number): ChatMessage => ({ id: `m${seq}`, seq, receivedAt }) as ChatMessage;
  const items = timeline([message(11, 1_000), message(12, 2_000), message(13, 2_000)], [order], [], undefined);
  const keys = items.filter((item) => item.kind !== 'day').map((item) => item.key);
  expect(keys).toEqual(['m:m11', 'm:m12', `l:${order.key}`, 'm:m13']);
  // The same event again (a resync, another tab) makes the same key, which the app shows once;
  // another op or message makes another, and none is a key other lines use.
  for (const event of EVENTS) {
    const key = groupWarningLine(event, 1).line.key;
    expect(key).toBe(groupWarningLine(event, 2).line.key);
    expect(key).not.toMatch(/^(rejected|op|notice|removed|key|failed|deleted):/);
  }
  const another = groupWarningLine({ type: 'groupRejected', rejection: { group: GROUP, seq: 8, reason: '' } }, 0);
  expect(another.line.key).not.toBe(groupWarningLine(REJECTED, 0).line.key);
});

test('a group that was behind says when it caught up, once for each time it was behind', () => {
  const behind = groupWarningLine(BEHIND, 0).line;
  const caught = caughtUpLine(behind, 5);
  expect(caught.text).toMatch(/caught up.*being sent/);
  expect(caught.key).toBe(caughtUpLine(behind, 9).key);
  const later = groupWarningLine({ type: 'groupBehind', group: GROUP, seenEpoch: 6, logEpoch: 5 }, 0).line;
  expect(caughtUpLine(later, 5).key).not.toBe(caught.key);
});

test("a refused post-quantum key is said until the connection ends, and what it means", () => {
  const refused: CoreEvent = { type: 'postQuantumKeyRefused', code: 'invalid_device_list', reason: FAKE };
  let shown = postQuantumAfter(undefined, refused);
  expect(shown).toBe('invalid_device_list');
  // The core says it before `connected`: the connection starting does not clear it.
  for (const next of [{ type: 'connected' }, { type: 'synced' }, { type: 'devicesChanged', user: 'u' }] as CoreEvent[]) {
    shown = postQuantumAfter(shown, next);
    expect(shown).toBe('invalid_device_list');
  }
  expect(postQuantumAfter(shown, { type: 'disconnected', reason: FAKE })).toBeUndefined();
  const text = postQuantumRefusedText('invalid_device_list');
  expect(text).toMatch(/still end-to-end encrypted/);
  expect(text).toMatch(/tried again/);
  const relink = postQuantumRefusedText('relink_needed');
  expect(relink).toMatch(/Link this device again/);
  expect(relink).not.toBe(text);
  expect(postQuantumRefusedText(FAKE)).toBe(text);
  expect(MISSED_UPDATES).toMatch(/Nothing is lost/);
  expect(MISSED_UPDATES).toMatch(/safety number/);
});

test('the groups list marks a group the server refuses, or one with a warning not yet read', () => {
  expect(groupMarker(false, false, false)).toBeUndefined();
  const refused = groupMarker(true, false, false);
  const warned = groupMarker(false, true, false);
  expect(refused).toMatch(/Not updating: open it/);
  expect(warned).toMatch(/warning/);
  expect(refused).not.toBe(warned);
  // The lasting refusal is said first: opening the group does not end it; while it is open
  // beside the list, the list does not ask to open it.
  expect(groupMarker(true, true, false)).toBe(refused);
  expect(groupMarker(true, false, true)).toBe('Not updating');
});
