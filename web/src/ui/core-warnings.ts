// What the client core noticed that the person must not miss, in our own words: a change to a
// group that the server sent and that failed verification, a group whose members are past a
// change this device has not been shown, a message the server delivered out of its author's
// order, a group the server refuses to serve (a banner while `GroupInfo.syncRefused` lasts),
// updates that came faster than the page could show them, and this device's post-quantum key
// refused. Kept apart from the app's state so that the words can be checked without a browser.
//
// The `reason` these events carry is never shown: a refusal's reason is the server's free text
// (it could say anything, bidi overrides included), and a verification failure's reason says
// what was wrong for logs, not for people.

import type { CoreEvent } from '../sdk/protocol.ts';
import type { SystemLine } from './lines.ts';

/** The core's warnings about one group, shown as a line in its conversation. */
export type GroupWarning = Extract<CoreEvent, { type: 'groupRejected' | 'groupBehind' | 'orderWarning' }>;

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
            "The server sent a change to this group that does not fit what this device verified. It was refused: nothing in the group changed because of it, and you don't need to do anything.",
          kind: 'system',
        },
      };
    case 'groupBehind':
      return {
        group: event.group,
        line: {
          key: `behind:${event.seenEpoch}`,
          at: now,
          text: "Others here have seen a change to the group that this device has not been shown yet. Your messages wait until it catches up, so that no one who may have been removed can read them.",
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
          text: 'A message here may be shown in the wrong place: the server delivered it out of the order its author wrote it in. It really is from its author.',
          kind: 'system',
        },
      };
  }
}

/** Said under a group's `behind:` line once the group caught up (`caughtUp`). */
export function caughtUpLine(behind: SystemLine, now: number): SystemLine {
  return {
    key: `caught-up:${behind.key}`,
    at: now,
    text: 'This device has caught up with the group: your waiting messages are being sent.',
    kind: 'system',
  };
}

/** Said at the top of a group the server refuses to serve (`GroupInfo.syncRefused`, lasting). */
export const SYNC_REFUSED =
  "The server refuses to send this group's messages to this device, so new messages here may be missing. Tell your facilitator if it lasts.";

/**
 * What the groups list says under a group that needs a look, if anything: the server refusing
 * to serve it (while `GroupInfo.syncRefused` lasts), else a warning line added while it was not
 * open (until it is opened). `open`: the group is the one on screen beside the list.
 */
export function groupMarker(syncRefused: boolean, warned: boolean, open: boolean): string | undefined {
  if (syncRefused) return open ? 'Not updating' : 'Not updating: open it to see why';
  if (warned) return 'A warning here: open it to read it';
  return undefined;
}

/** Said when updates were left out: what is shown was read again, and what may have been missed. */
export const MISSED_UPDATES =
  "Some updates came faster than this page could show them. Nothing is lost: your groups were read again. A warning, such as a member's safety number changing, may have been among them: if you rely on a safety number, compare it again.";

/** Said where this device is shown when the server refused its post-quantum key (`code`). */
export function postQuantumRefusedText(code: string): string {
  if (code === 'relink_needed') {
    return "This device's keys do not match your list of devices (its data is from before an update), so some messages to it cannot be opened here. Link this device again from another of your devices; if you have no other device, make a new profile, and ask your facilitator to add you again.";
  }
  return "The server has not accepted this device's post-quantum key. Your messages are still end-to-end encrypted; until the server accepts it, messages to this device lack the extra protection against future quantum computers. It is tried again each time the app connects and when your devices change.";
}

/**
 * The post-quantum refusal to show after `event`, given the one shown before. The core says it
 * at a connection before it says `connected`, and tries again at the next connection (saying
 * it again if it is refused again), so it is cleared when the connection ends, never when one
 * starts.
 */
export function postQuantumAfter(shown: string | undefined, event: CoreEvent): string | undefined {
  switch (event.type) {
    case 'postQuantumKeyRefused':
      return event.code;
    case 'disconnected':
      return undefined;
    default:
      return shown;
  }
}
