// What the client core noticed that the person must not miss, in our own words: a change to a
// group that the server sent and that failed verification, a group whose members are past a
// change this device has not been shown, a message the server delivered out of its author's
// order, a group the server refuses to serve, updates that came faster than the page could show
// them, and this device's post-quantum key refused. Kept apart from the app's state so that the
// words can be checked without a browser.
//
// The `reason` these events carry is never shown: a refusal's reason is the server's free text
// (it could say anything, bidi overrides included), and a verification failure's reason says
// what was wrong for logs, not for people.

import type { CoreEvent } from '../sdk/protocol.ts';
import type { SystemLine } from './lines.ts';

/** The core's warnings about one group, shown as a line in its conversation. */
export type GroupWarning = Extract<CoreEvent, { type: 'groupRejected' | 'groupBehind' | 'orderWarning' | 'syncRefused' }>;

/** The group `event` is about, and the line that says it (the same key for the same event). */
export function groupWarningLine(event: GroupWarning, now: number): { group: string; line: SystemLine } {
  switch (event.type) {
    case 'groupRejected':
      return {
        group: event.rejection.group,
        line: {
          key: `group-rejected:${event.rejection.seq}`,
          at: now,
          text:
            'The server sent a change to this group that could not be verified. It was refused: the group stays as it was last verified, and no one was added or removed by it.',
          kind: 'system',
        },
      };
    case 'groupBehind':
      return {
        group: event.group,
        line: {
          key: `behind:${event.seenEpoch}`,
          at: now,
          text: 'Others here are past a change to the group that this device has not been shown yet. Your messages wait until it catches up.',
          kind: 'system',
        },
      };
    case 'orderWarning':
      return {
        group: event.rejection.group,
        line: {
          key: `order:${event.rejection.seq}`,
          at: now,
          afterSeq: event.rejection.seq,
          text: "The message above may be out of order: the server's order differs from its author's. The message itself is authentic.",
          kind: 'system',
        },
      };
    case 'syncRefused':
      return {
        group: event.group,
        line: {
          key: 'sync-refused',
          at: now,
          text: "The server refuses to send this group's messages to this device, so new messages here may be missing.",
          kind: 'system',
        },
      };
  }
}

/** Said when updates were left out: what is shown was read again, and what may have been missed. */
export const MISSED_UPDATES =
  "Some updates came faster than this page could show them. Nothing is lost: your groups were read again. A warning, such as a member's safety number changing, may have been among them: if you rely on a safety number, compare it again.";

/** Said where this device is shown when the server refused its post-quantum key (`code`). */
export function postQuantumRefusedText(code: string): string {
  if (code === 'relink_needed') {
    return 'Your list of devices names another post-quantum key for this device than it holds (its data is from before an update). Link this device again from another of your devices.';
  }
  return "The server has not accepted this device's post-quantum key. Until it does, messages to this device are protected without post-quantum encryption. It is tried again each time the app connects and when your devices change.";
}
