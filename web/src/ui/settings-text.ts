// A group's settings in plain words for its members (GroupInfo): "This group is open Mon–Thu
// 18:00–22:00 (Europe/Berlin time); messages are kept 30 days." From the core's typed
// `settings()`, never from walking the group's log in the page.

import type { OpenHours, SettingsInfo } from '../wasm-pkg/confide_client_web.js';

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/** Minutes after midnight as "18:00" (1440, the day's end, as "24:00"). */
export function minuteText(minute: number): string {
  const h = Math.floor(minute / 60);
  const m = minute % 60;
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`;
}

/** Days (0 = Monday) as "Mon–Thu, Sat": runs of three or more days become a range. */
export function daysText(days: number[]): string {
  const sorted = [...new Set(days)].filter((d) => d >= 0 && d < 7).sort((a, b) => a - b);
  const parts: string[] = [];
  let start = 0;
  while (start < sorted.length) {
    let end = start;
    while (end + 1 < sorted.length && sorted[end + 1] === (sorted[end] ?? 0) + 1) end++;
    const first = DAYS[sorted[start] ?? 0] ?? '';
    const last = DAYS[sorted[end] ?? 0] ?? '';
    if (end - start >= 2) parts.push(`${first}–${last}`);
    else for (let i = start; i <= end; i++) parts.push(DAYS[sorted[i] ?? 0] ?? '');
    start = end + 1;
  }
  return parts.join(', ');
}

/** The weekly windows as "Mon–Thu 18:00–22:00 and Sat 10:00–12:00": days with the same hours together. */
export function hoursText(hours: OpenHours): string {
  const byTimes = new Map<string, number[]>();
  for (const window of hours.windows) {
    const times = `${minuteText(window.startMinute)}–${minuteText(window.endMinute)}`;
    byTimes.set(times, [...(byTimes.get(times) ?? []), window.day]);
  }
  const parts = [...byTimes.entries()]
    .sort(([, a], [, b]) => Math.min(...a) - Math.min(...b))
    .map(([times, days]) => `${daysText(days)} ${times}`);
  return parts.join(' and ');
}

/** A period in whole seconds in plain words: "30 days", "1 hour", "90 seconds". */
export function periodText(seconds: number): string {
  const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (seconds % 86_400 === 0) return plural(seconds / 86_400, 'day');
  if (seconds % 3_600 === 0) return plural(seconds / 3_600, 'hour');
  if (seconds % 60 === 0) return plural(seconds / 60, 'minute');
  return plural(seconds, 'second');
}

/**
 * The settings as sentences for members: when the group is open and how long messages are kept
 * first, then a lock, slow mode and private messages when they apply.
 */
export function settingsSentences(settings: SettingsInfo): string[] {
  const open =
    settings.openHours === undefined
      ? 'This group is open at any time'
      : `This group is open ${hoursText(settings.openHours)} (${settings.openHours.timeZone} time)`;
  const kept =
    settings.retentionSeconds === undefined
      ? 'messages are kept until someone deletes them'
      : `messages are kept ${periodText(settings.retentionSeconds)}`;
  const sentences = [`${open}; ${kept}.`];
  if (settings.locked) sentences.push('A facilitator has closed the chat for now: only facilitators can write.');
  if (settings.slowModeSeconds > 0) {
    sentences.push(`Slow mode is on: each member can send one message every ${periodText(settings.slowModeSeconds).replace(/^1 /, '')}.`);
  }
  sentences.push(
    settings.membersMayMessagePrivately
      ? 'Members can message each other privately.'
      : 'Members cannot message each other privately here.',
  );
  return sentences;
}
