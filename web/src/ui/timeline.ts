// What the conversation shows, in order: messages, system lines and placeholders, with a
// separator before each new day, and the person's messages still waiting to send at the end (as
// the core lists them, in the order they go). A check-in round is one block where its prompt is
// (or, before the prompt arrived, where it was opened): the answers and passes it counts are not
// shown as messages of their own; other messages tagged for it are.

import type { ChatMessage, HeldMessage, RoundView } from '../wasm-pkg/confide_client_web.js';
import { dayKey, dayLabel } from './format.ts';
import type { SystemLine } from './lines.ts';

/** One row of the conversation. */
export type Item =
  | { kind: 'day'; key: string; label: string }
  | { kind: 'message'; key: string; message: ChatMessage; own: boolean }
  | { kind: 'line'; key: string; line: SystemLine }
  | { kind: 'round'; key: string; round: RoundView }
  | { kind: 'queued'; key: string; held: HeldMessage };

/**
 * Merges `messages`, `lines` and `rounds` by time (a line that names a `seq` goes after it; a
 * round goes where its prompt is).
 */
export function timeline(
  messages: readonly ChatMessage[],
  lines: readonly SystemLine[],
  queued: readonly HeldMessage[],
  me: string | undefined,
  rounds: readonly RoundView[] = [],
): Item[] {
  const entries: { at: number; order: number; item: Item }[] = [];
  const inRounds = new Map(rounds.map((round) => [round.id, round]));
  const placed = new Set<string>();
  const counted = new Set(rounds.flatMap((round) => round.answers.map((answer) => answer.message)));
  messages.forEach((message, order) => {
    const round = message.round === undefined ? undefined : inRounds.get(message.round.id);
    if (round !== undefined) {
      // The block stands where the round's first prompt from its opener is, and holds the
      // answers and passes the core counts. Any other message tagged for the round (an answer
      // its author replaced, a second question) stays an ordinary message, so it can still be
      // read, reported or deleted.
      if (message.round?.part === 'prompt' && message.sender === round.openedBy && !placed.has(round.id)) {
        placed.add(round.id);
        entries.push({ at: message.receivedAt, order, item: { kind: 'round', key: `r:${round.id}`, round } });
        return;
      }
      if (counted.has(message.id)) return;
    }
    // A pass the block does not count (or of a round not listed yet) has no text to show.
    if (message.round?.part === 'pass') return;
    entries.push({ at: message.receivedAt, order, item: { kind: 'message', key: `m:${message.id}`, message, own: message.sender === me } });
  });
  for (const round of rounds) {
    if (placed.has(round.id)) continue;
    // Its prompt is not among the loaded messages (older, or not here yet): where it was opened.
    entries.push({ at: round.openedAt, order: messages.length, item: { kind: 'round', key: `r:${round.id}`, round } });
  }
  for (const line of lines) {
    let at = line.at;
    let place = messages.length;
    if (line.afterSeq !== undefined) {
      // Right after its message, also among messages the server stamped with the same time.
      const index = messages.findLastIndex((m) => m.seq <= line.afterSeq!);
      const before = messages[index];
      if (before !== undefined) {
        at = before.receivedAt;
        place = index + 0.5;
      }
    }
    entries.push({ at, order: place, item: { kind: 'line', key: `l:${line.key}`, line } });
  }
  entries.sort((a, b) => a.at - b.at || a.order - b.order);
  const items: Item[] = [];
  let day: string | undefined;
  for (const entry of entries) {
    const key = dayKey(entry.at);
    if (key !== day) {
      day = key;
      items.push({ kind: 'day', key: `d:${key}`, label: dayLabel(entry.at) });
    }
    items.push(entry.item);
  }
  for (const held of queued) items.push({ kind: 'queued', key: `q:${held.id}`, held });
  return items;
}
