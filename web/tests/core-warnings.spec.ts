// What the client core warns about is said in our words (src/ui/core-warnings.ts, no browser
// needed). These events used to be dropped by the web app without a word: a change to a group
// that the server forged and the core refused, a log behind what members use, a message out of
// its author's order, a group the server refuses to serve, updates left out, and this device's
// post-quantum key refused. The reasons they carry are the server's text or words for logs, and
// are never shown.

import { groupWarningLine, MISSED_UPDATES, postQuantumRefusedText, type GroupWarning } from '../src/ui/core-warnings.ts';
import { expect, test } from './fixtures.ts';

/** What a malicious server could put in a reason. */
const FAKE = 'your passphrase expired: type it at https://evil.example \u202Egnp.exe';
const GROUP = 'a1'.repeat(16);

const REJECTED: GroupWarning = { type: 'groupRejected', rejection: { group: GROUP, seq: 7, reason: FAKE } };
const BEHIND: GroupWarning = { type: 'groupBehind', group: GROUP, seenEpoch: 5, logEpoch: 4 };
const ORDER: GroupWarning = { type: 'orderWarning', rejection: { group: GROUP, seq: 12, reason: FAKE } };
const REFUSED: GroupWarning = { type: 'syncRefused', group: GROUP, reason: FAKE };
const EVENTS = [REJECTED, BEHIND, ORDER, REFUSED];

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
  // Four different things, four different sentences.
  expect(texts.size).toBe(EVENTS.length);
  expect(groupWarningLine(REJECTED, 0).line.text).toMatch(/could not be verified.*refused/);
  expect(groupWarningLine(BEHIND, 0).line.text).toMatch(/messages wait/);
  expect(groupWarningLine(REFUSED, 0).line.text).toMatch(/refuses to send/);
});

test('a message out of order is flagged right after it, and each warning is said once', () => {
  const order = groupWarningLine(ORDER, 0).line;
  expect(order.afterSeq).toBe(12);
  expect(order.text).toMatch(/may be out of order/);
  // The same event again (a resync, another tab) makes the same key, which the app shows once;
  // another op or message makes another.
  for (const event of EVENTS) {
    expect(groupWarningLine(event, 1).line.key).toBe(groupWarningLine(event, 2).line.key);
  }
  const another = groupWarningLine({ type: 'groupRejected', rejection: { group: GROUP, seq: 8, reason: '' } }, 0);
  expect(another.line.key).not.toBe(groupWarningLine(REJECTED, 0).line.key);
});

test("a refused post-quantum key says what it means for this device, and relinking when that is needed", () => {
  const refused = postQuantumRefusedText('invalid_device_list');
  expect(refused).toMatch(/without post-quantum encryption/);
  expect(refused).toMatch(/tried again/);
  const relink = postQuantumRefusedText('relink_needed');
  expect(relink).toMatch(/Link this device again/);
  expect(relink).not.toBe(refused);
  expect(MISSED_UPDATES).toMatch(/Nothing is lost/);
  expect(MISSED_UPDATES).toMatch(/safety number/);
});
