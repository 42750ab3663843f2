// The meeting schedule in plain words: each meeting in the group's own time zone ("Every Tuesday,
// 18:00–19:30"), and the next one in the person's own ("Tuesday 8 December, 2:30 PM, in 3 days"),
// with the reminder the open app shows from 15 minutes before a meeting until it ends. Intl only.

import { dateOf } from '../format.ts';
import { minuteText } from '../settings-text.ts';
import type { Meeting, NextMeeting } from '../../wasm-pkg/confide_client_web.js';

/** The days of the week, 0 = Monday (the protocol's numbering). */
export const WEEKDAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];

/** How long before a meeting the open app reminds the person of it. */
export const REMINDER_MS = 15 * 60 * 1000;

/** The local times of a meeting, "18:00–19:30" (past midnight: "23:00–00:30"). */
function span(startMinute: number, minutes: number): string {
  return `${minuteText(startMinute)}–${minuteText((startMinute + minutes) % 1440)}`;
}

/** A `YYYY-MM-DD` date as "Thursday 10 December 2026" (the calendar date, no time zone). */
function dateText(date: string): string {
  const [y, m, d] = date.split('-').map(Number);
  if (y === undefined || m === undefined || d === undefined || [y, m, d].some((n) => !Number.isFinite(n))) return date;
  return new Intl.DateTimeFormat(undefined, {
    weekday: 'long',
    day: 'numeric',
    month: 'long',
    year: 'numeric',
    timeZone: 'UTC',
  }).format(dateOf(Date.UTC(y, m - 1, d)));
}

/** One meeting in the schedule's own time: "Every Tuesday, 18:00–19:30" or a date. */
export function meetingText(meeting: Meeting): string {
  if (meeting.kind === 'weekly') {
    return `Every ${WEEKDAYS[meeting.day] ?? 'week'}, ${span(meeting.startMinute, meeting.minutes)}`;
  }
  return `${dateText(meeting.date)}, ${span(meeting.startMinute, meeting.minutes)}`;
}

/** This device's time zone, as the browser names it ("Asia/Kolkata"). */
export function viewerTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

const whenFormat = new Intl.DateTimeFormat(undefined, {
  weekday: 'long',
  day: 'numeric',
  month: 'long',
  hour: 'numeric',
  minute: '2-digit',
});
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "Tuesday, 8 December at 2:30 PM" in this device's time zone. */
export function whenText(ms: number): string {
  return whenFormat.format(dateOf(ms));
}

/** "2:30 PM" in this device's time zone. */
export function timeText(ms: number): string {
  return timeFormat.format(dateOf(ms));
}

/** "in 10 minutes", "in 5 hours", "in 3 days". */
export function untilText(ms: number, now: number): string {
  const minutes = Math.round((ms - now) / 60_000);
  if (Math.abs(minutes) < 60) return relative.format(minutes, 'minute');
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 48) return relative.format(hours, 'hour');
  return relative.format(Math.round(hours / 24), 'day');
}

/** The next meeting in the person's own words and time zone. */
export function nextMeetingText(next: NextMeeting, now: number): string {
  if (now >= next.startsAt) return `Now, until ${timeText(next.endsAt)}`;
  return `${whenText(next.startsAt)} (${untilText(next.startsAt, now)})`;
}

/**
 * What the reminder banner says at `now`: from {@link REMINDER_MS} before the meeting until it
 * ends, else nothing.
 */
export function reminderText(next: NextMeeting | undefined, now: number): string | undefined {
  if (next === undefined || now < next.startsAt - REMINDER_MS || now >= next.endsAt) return undefined;
  if (now < next.startsAt) return `Your group meets at ${timeText(next.startsAt)} (${untilText(next.startsAt, now)}).`;
  return `Your group is meeting now, until ${timeText(next.endsAt)}.`;
}
