// Times in the app come from other people's devices and from the server, which may claim any
// number: one message claiming a time past what a JavaScript Date can hold used to throw while
// the conversation rendered ("Invalid time value"), so the group could not be opened by anyone.
// The formatting helpers must show such a time, never throw (no browser needed).

import { clock, dayLabel, isoTime, shortTime } from '../src/ui/format.ts';
import { formatShortTime, formatTime } from '../src/ui/facilitator/util.ts';
import { expect, test } from './fixtures.ts';

test('a claimed time past what a Date can hold is shown, not thrown', () => {
  for (const claimed of [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, Number.NaN, Infinity]) {
    expect(() => clock(claimed), String(claimed)).not.toThrow();
    expect(() => dayLabel(claimed), String(claimed)).not.toThrow();
    expect(() => shortTime(claimed), String(claimed)).not.toThrow();
    expect(() => formatTime(claimed), String(claimed)).not.toThrow();
    expect(() => formatShortTime(claimed), String(claimed)).not.toThrow();
    expect(isoTime(claimed), String(claimed)).toMatch(/^[+-]?\d+-\d\d-\d\dT/);
  }
  expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z');
});
