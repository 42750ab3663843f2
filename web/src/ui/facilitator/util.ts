// Small helpers the facilitator screens share: times in the person's own time zone, durations in
// plain words, roles, links and Escape. Someone else's text arrives already made inert by the
// worker (sdk/inert.ts); errors are worded in ../errors.ts.

import { dateOf } from '../format.ts';

/** A moment (milliseconds since the epoch) as a date and time in the person's time zone. */
export function formatTime(at: number): string {
  return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(dateOf(at));
}

/** A moment as a time only ("9:30 PM") when it is today, else with its date. */
export function formatShortTime(at: number, now: number = Date.now()): string {
  const day = (ms: number) => dateOf(ms).toDateString();
  if (day(at) === day(now)) {
    return new Intl.DateTimeFormat(undefined, { timeStyle: 'short' }).format(dateOf(at));
  }
  return formatTime(at);
}

/** A moment relative to now, "in 25 minutes" or "3 hours ago". */
export function formatRelative(at: number, now: number = Date.now()): string {
  const seconds = Math.round((at - now) / 1000);
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const abs = Math.abs(seconds);
  if (abs < 60) return format.format(seconds, 'second');
  if (abs < 3600) return format.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return format.format(Math.round(seconds / 3600), 'hour');
  return format.format(Math.round(seconds / 86400), 'day');
}

/** A duration in seconds in plain words: "15 minutes", "1 hour", "2 days". */
export function formatDuration(seconds: number): string {
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (seconds <= 0) return 'off';
  if (seconds % 86400 === 0) return plural(seconds / 86400, 'day');
  if (seconds % 3600 === 0) return plural(seconds / 3600, 'hour');
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute');
  return plural(seconds, 'second');
}

/** A role in plain words. */
export function roleName(role: string | undefined): string {
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

/** The https link that opens the app on this server with an invite (`#invite=…`). */
export function webLink(invite: string, origin: string = location.origin): string {
  return `${origin}/#invite=${invite}`;
}

/**
 * An attachment (`{@attach onEscape(close)}`) for a small inline form: Escape inside it calls
 * `close` (which gives the focus back to what opened the form).
 */
export function onEscape(close: () => void): (element: HTMLElement) => () => void {
  return (element) => {
    const listener = (event: KeyboardEvent) => {
      if (event.key === 'Escape') {
        event.stopPropagation();
        close();
      }
    };
    element.addEventListener('keydown', listener);
    return () => element.removeEventListener('keydown', listener);
  };
}
