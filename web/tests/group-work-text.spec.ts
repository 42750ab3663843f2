// The group-work tools' rules that need no browser: which links the app ever opens (https only,
// shown whole), when the meeting reminder shows (from 15 minutes before until the meeting ends),
// how the resource search matches, and how warnings are worded (an id the group does not define
// still warns).

import { reminderText } from '../src/ui/group-work/meetings.ts';
import { byCategory, searchResources } from '../src/ui/group-work/resources.ts';
import { warningText } from '../src/ui/group-work/warnings.ts';
import { isHttpsLink } from '../src/ui/links.ts';
import { timeline } from '../src/ui/timeline.ts';
import type { ChatMessage, RoundView } from '../src/wasm-pkg/confide_client_web.js';
import { expect, test } from './fixtures.ts';

test('only an https link with a host and no spaces or credentials is ever opened', () => {
  for (const link of ['https://meet.example.org/circle', 'https://example.org/sleep?week=2#notes']) {
    expect(isHttpsLink(link), link).toBe(true);
  }
  for (const link of [
    'http://meet.example.org/circle',
    'javascript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'HTTPS://meet.example.org',
    ' https://meet.example.org',
    'https://meet.example.org/a b',
    'https://',
    'https://user:secret@meet.example.org/',
    'https://meet.example.org/\u202Egro',
    `https://example.org/${'a'.repeat(2048)}`,
  ]) {
    expect(isHttpsLink(link), link).toBe(false);
  }
});

test('the meeting reminder shows from 15 minutes before the start until the end', () => {
  const startsAt = Date.UTC(2026, 11, 8, 17, 0);
  const next = { startsAt, endsAt: startsAt + 45 * 60_000, index: 0 };
  const minute = 60_000;
  expect(reminderText(next, startsAt - 16 * minute)).toBeUndefined();
  expect(reminderText(next, startsAt - 15 * minute)).toMatch(/^Your group meets at .* \(in 15 minutes\)\.$/);
  expect(reminderText(next, startsAt + 10 * minute)).toMatch(/^Your group is meeting now, until /);
  expect(reminderText(next, next.endsAt - 1)).toMatch(/^Your group is meeting now/);
  expect(reminderText(next, next.endsAt)).toBeUndefined();
  expect(reminderText(undefined, startsAt)).toBeUndefined();
});

test('resources match every word of the search in any case, grouped by category in order', () => {
  const resources = [
    { title: 'Box breathing', category: 'Grounding', text: 'Breathe in for four.\nHold for four.' },
    { title: 'Sleep and low mood', category: 'Reading', link: 'https://example.org/sleep' },
    { title: 'Five senses', category: 'Grounding', text: 'Name five things you can see.' },
  ];
  expect(searchResources(resources, '').map((r) => r.index)).toEqual([0, 1, 2]);
  expect(searchResources(resources, 'BREATHE hold').map((r) => r.index)).toEqual([0]);
  expect(searchResources(resources, 'grounding').map((r) => r.index)).toEqual([0, 2]);
  expect(searchResources(resources, 'breathe sleep')).toEqual([]);
  expect(byCategory(searchResources(resources, '')).map((g) => [g.category, g.items.map((i) => i.index)])).toEqual([
    ['Grounding', [0, 2]],
    ['Reading', [1]],
  ]);
});

test('a warning names the group’s topics, and one the group does not define still warns', () => {
  const topics = [
    { id: 1, label: 'Self-harm' },
    { id: 2, label: 'Grief' },
  ];
  expect(warningText([2], topics)).toBe('Content warning: Grief');
  expect(warningText([1, 2], topics)).toBe('Content warning: Self-harm, Grief');
  expect(warningText([9], topics)).toBe('Content warning');
  expect(warningText([2, 9], topics)).toBe('Content warning: Grief');
});

// A round's block stands for its prompt and for the answers the core counts; every other
// message tagged for the round is an ordinary message, so a person can still see, report or
// delete it (an answer its author replaced, a second question).
test('a replaced answer and a second question stay in the conversation; counted ones are in the block', () => {
  const message = (id: string, seq: number, sender: string, text: string, part: 'prompt' | 'answer' | 'pass') =>
    ({
      group: 'g',
      seq,
      number: seq,
      id,
      sender,
      senderDevice: `${sender}-device`,
      senderName: sender,
      sentAt: seq * 1000,
      receivedAt: seq * 1000,
      text,
      warnings: [],
      hidden: false,
      round: { id: 'r1', part },
    }) as unknown as ChatMessage;
  const messages = [
    message('m1', 1, 'ana', 'How are you arriving today?', 'prompt'),
    message('m2', 2, 'bo', 'A 2, tired', 'answer'),
    message('m3', 3, 'ana', 'And one word for the week?', 'prompt'),
    message('m4', 4, 'bo', 'A 3 now, the coffee helped', 'answer'),
    message('m5', 5, 'cy', '', 'pass'),
  ];
  const answer = (user: string, id: string, text: string, passed: boolean) => ({
    user,
    name: user,
    message: id,
    number: 0,
    text,
    passed,
    sentAt: 0,
    warnings: [],
    hidden: false,
  });
  const round = {
    id: 'r1',
    openedBy: 'ana',
    openedByName: 'ana',
    openedAt: 1000,
    open: true,
    prompt: 'How are you arriving today?',
    promptWarnings: [],
    promptHidden: false,
    answers: [answer('bo', 'm4', 'A 3 now, the coffee helped', false), answer('cy', 'm5', '', true)],
    answered: false,
  } as unknown as RoundView;
  const items = timeline(messages, [], [], 'ana', [round]);
  const shown = items.flatMap((item) => (item.kind === 'message' ? [item.message.id] : []));
  expect(shown).toEqual(['m2', 'm3']);
  expect(items.filter((item) => item.kind === 'round')).toHaveLength(1);
});
