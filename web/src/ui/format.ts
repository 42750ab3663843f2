// Times in the person's own time zone and words (WEB-UX.md "Plain words"): Intl only, no library.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "9:30 PM" in the local time zone. */
export function clock(ms: number): string {
  return timeFormat.format(new Date(ms));
}

/** The local calendar day of `ms`, as a key ("2026-12-04"). */
export function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** "Today", "Yesterday" or "Thursday, 3 December". */
export function dayLabel(ms: number, now = Date.now()): string {
  if (dayKey(ms) === dayKey(now)) return 'Today';
  if (dayKey(ms) === dayKey(now - 86_400_000)) return 'Yesterday';
  return dayFormat.format(new Date(ms));
}

/** A short time for lists: the clock today, else the date. */
export function shortTime(ms: number, now = Date.now()): string {
  return dayKey(ms) === dayKey(now) ? clock(ms) : dateFormat.format(new Date(ms));
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
