// Small helpers the facilitator screens share: showing someone else's text inertly, times in
// the person's own time zone, durations in plain words, and errors people can act on.

import { isCoreError } from '../../sdk/protocol.ts';
import { dateOf } from '../format.ts';

/**
 * Someone else's text made inert for display: bidirectional overrides and isolates, C0 and C1
 * controls and invisible characters become U+FFFD, tabs become spaces (the rule of
 * `sanitizeForDisplay` in client-web, which runs in the worker; this is the page's copy until
 * the SDK exposes it). Line breaks stay; show the result as text (`{text}`), never as HTML.
 */
export function inert(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/[\u2028\u2029]/g, '\n')
    .replace(/\t/g, ' ')
    .replace(
      // C0 (not \n), DEL, C1, zero-width and bidi marks, overrides, isolates, BOM, and the
      // invisible operators and tags.
      /[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u202A-\u202E\u2060-\u206F\uFEFF\uFFF9-\uFFFB]|\uDB40[\uDC00-\uDC7F]/g,
      '\uFFFD',
    );
}

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

/** What went wrong, in words for people: the core's message, or a plain fallback. */
export function errorText(error: unknown): string {
  if (isCoreError(error)) {
    switch (error.code) {
      case 'unreachable':
      case 'timeout':
      case 'closed':
        return "Can't reach the server right now. Check your connection, then try again.";
      case 'not_member':
      case 'removed':
        return 'You are no longer a member of this group.';
      case 'elsewhere':
        return 'Confide is open in another tab. Use that tab, or close it and reload this page.';
      default:
        // The core's own words (`not_allowed` says what may not be done and why).
        return error.message;
    }
  }
  return 'Something went wrong. Please try again.';
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
