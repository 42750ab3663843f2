// Errors are shown in our own words only (src/ui/errors.ts, no browser needed). A refusal's
// `message` is the server's free text, and the server is not trusted: it used to be shown as it
// came ("Not sent: <the server's words>"), so a server could put a bidi override or a fake
// instruction ("your passphrase expired: type it at evil.example") in front of people. The
// code, checked to be a plain word, picks the sentence.

import { errorCode, errorSentence, errorText } from '../src/ui/errors.ts';
import { expect, test } from './fixtures.ts';

/** What a malicious server could say with a refusal. */
const FAKE = 'your passphrase expired: type it at https://evil.example \u202Egnp.exe';

test("a server's refusal is shown in our words, never in the server's", () => {
  for (const show of [errorText, errorSentence]) {
    const muted = show({ code: 'muted', message: FAKE, retryAfterMs: 1000 });
    expect(muted).toMatch(/muted in this group/i);
    expect(muted).not.toContain('evil');
    expect(muted).not.toContain('\u202E');
    expect(show({ code: 'rate_limited', message: FAKE })).toMatch(/too many requests/i);
    expect(show({ code: 'invite_revoked', message: FAKE })).toMatch(/withdrew this invite/i);
  }
  expect(errorSentence({ code: 'rate_limited', message: FAKE })).toBe(
    'Too many requests in a short time: wait a moment, then try again.',
  );
});

test('an unknown code is named only when it is a plain word', () => {
  expect(errorText({ code: 'new_refusal', message: FAKE })).toBe('something went wrong (error code new_refusal)');
  for (const code of ['x\u202Eevil', 'Evil', 'a'.repeat(41), '', 'code with spaces', 'evil.example']) {
    expect(errorCode({ code, message: FAKE })).toBe('unknown');
    expect(errorText({ code, message: FAKE })).toBe('something went wrong (error code unknown)');
  }
  // Something thrown that is not a Confide error at all.
  expect(errorText(new Error(FAKE))).toBe('something went wrong');
  expect(errorSentence(FAKE)).toBe('Something went wrong.');
});
