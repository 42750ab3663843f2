// Times in the person's own time zone and words (WEB-UX.md "Plain words"): Intl only, no library.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** The furthest time from 1970 a JavaScript Date can hold, in milliseconds. */
const MAX_DATE_MS = 8.64e15;

/**
 * A Date for `ms`, kept within what a Date can hold. Times come from other people's devices and
 * from the server, which may claim any number; one past the range would make formatting throw
 * and take the whole screen down.
 */
export function dateOf(ms: number): Date {
  return new Date(Number.isFinite(ms) ? Math.max(-MAX_DATE_MS, Math.min(MAX_DATE_MS, ms)) : 0);
}

/** The machine-readable form for `<time datetime>`. */
export function isoTime(ms: number): string {
  return dateOf(ms).toISOString();
}

/** "9:30 PM" in the local time zone. */
export function clock(ms: number): string {
  return timeFormat.format(dateOf(ms));
}

/** The local calendar day of `ms`, as a key ("2026-12-04"). */
export function dayKey(ms: number): string {
  const d = dateOf(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** "Today", "Yesterday" or "Thursday, 3 December". */
export function dayLabel(ms: number, now = Date.now()): string {
  if (dayKey(ms) === dayKey(now)) return 'Today';
  if (dayKey(ms) === dayKey(now - 86_400_000)) return 'Yesterday';
  return dayFormat.format(dateOf(ms));
}

/** A short time for lists: the clock today, else the date. */
export function shortTime(ms: number, now = Date.now()): string {
  return dayKey(ms) === dayKey(now) ? clock(ms) : dateFormat.format(dateOf(ms));
}

/** "in 25 minutes" / "in 40 seconds". */
export function fromNow(ms: number, now = Date.now()): string {
  const seconds = Math.round((ms - now) / 1000);
  if (Math.abs(seconds) < 60) return relative.format(seconds, 'second');
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 60) return relative.format(minutes, 'minute');
  return relative.format(Math.round(minutes / 60), 'hour');
}

/** A role in plain words. */
export function roleWord(role: string | undefined): string {
  switch (role) {
    case 'facilitator':
      return 'Facilitator';
    case 'coFacilitator':
      return 'Co-facilitator';
    case 'member':
      return 'Member';
    default:
      return 'Not a member';
  }
}

/**
 * Why a message the person wrote is not sent by itself, and what they can do: "Eve joined after
 * you wrote this. Send it to everyone now, or discard it?" Everyone who would read it now and
 * could not then is named, each of them (a consent to "3 others" is no consent): a new person,
 * or someone with a new device. Empty: this device cannot tell who, so it can only be discarded.
 */
export function joinedSince(added: readonly { displayName: string; newDevice: boolean }[]): string {
  if (added.length === 0) {
    return "The group changed after you wrote this, and this device can't tell who would read it now. Discard it, and write it again if you still want to.";
  }
  const names = added.map((a) => (a.newDevice ? `${a.displayName} (on a new device)` : a.displayName));
  const who = names.length === 1 ? (names[0] ?? '') : `${names.slice(0, -1).join(', ')} and ${names.at(-1) ?? ''}`;
  const verb = added.every((a) => a.newDevice) ? 'came in' : 'joined';
  return `${who} ${verb} after you wrote this. Send it to everyone now, or discard it?`;
}
