// What went wrong, in our own words: every error the app shows comes from here. A failed call
// carries a stable `code` (client-core's `ClientError::code()`, the server's codes of
// PROTOCOL.md §9.9, client-web's and the SDK's own) and a `message`. The message is never shown:
// for a refusal it is the server's free text, and the server is not trusted. Each code has a
// sentence here; an unknown one gets a general sentence naming the code, once the code is known
// to be a plain word (anything else is named `unknown`).

import { isCoreError } from '../sdk/protocol.ts';

/** What a code must look like to be shown: a short plain word, as every code we know is. */
const CODE = /^[a-z_]{1,40}$/;

/**
 * Each code's clause: lower case and without a full stop, to go inside a sentence ("Not sent:
 * …. Your message is still in the box."). {@link errorSentence} makes one a sentence.
 */
const REASONS: ReadonlyMap<string, string> = new Map(
  Object.entries({
    // The server's refusals (PROTOCOL.md §9.9).
    bad_frame: 'the server could not read the request (a fault in this version of Confide)',
    unknown_frame: 'the server does not know this request: it may run another version of Confide',
    frame_too_large: 'that is too large to send',
    unsupported_version: 'the server runs another version of Confide: one of them must be updated',
    not_authenticated: 'this device is not signed in to the server yet: try again in a moment',
    already_authenticated: 'this device was already signed in to the server',
    auth_failed: "the server could not confirm this device's keys",
    registration_closed: 'the server takes no new profiles without a registration token from the people who run it',
    already_registered: 'the server already knows this device or user with other keys',
    unknown_device: 'the server does not know one of the devices involved: try again after a moment',
    invalid_op: 'the server refused the change to the group: try again after a moment',
    op_conflict: 'someone else changed the group at the same time: try again',
    no_such_group: 'the server does not have this group',
    group_exists: 'a group with that id already exists',
    not_member: 'you are not a member of this group',
    invite_revoked: 'a facilitator withdrew this invite',
    invite_expired: 'this invite has expired',
    invite_used_up: 'this invite has been used as many times as it allows',
    changed_since_asked: 'the group changed since you were asked: look at who would read it now, then answer again',
    invite_unknown: 'the group does not know this invite: the link may be incomplete or for another server',
    banned: 'you are banned from this group',
    muted: 'you are muted in this group for now',
    locked: 'the group is paused or outside its open hours',
    // client-web's own: the profile was locked (in another tab, or by the idle lock).
    profile_locked: 'your profile is locked: unlock it, then try again',
    slow_mode: 'slow mode is on: wait a moment before sending again',
    agreement_required: "you need to accept the group's agreement first",
    stale_epoch: "the group's membership changed meanwhile: try again",
    bad_envelope: 'the server refused the message as malformed (a fault in this version of Confide)',
    message_too_large: 'that is too large to send',
    rate_limited: 'too many requests in a short time: wait a moment, then try again',
    too_many_connections: 'the server has too many connections from this device or network: try again in a moment',
    inbox_full: "the recipient's inbox is full for now: try again later",
    limit_reached: 'this device has made as many groups as the server allows',
    storage: 'the server could not save it: try again in a moment',
    shutting_down: 'the server is restarting: try again in a moment',
    internal: 'something went wrong inside Confide or on the server',
    unrecognized: 'the server gave a reason this version of Confide does not know',
    // The core's own (client-core's `ClientError::code()`).
    wrong_passphrase: "that passphrase doesn't open this profile",
    profile_in_use: 'this profile is open somewhere else',
    store: 'the profile kept in this browser could not be read or written',
    unreachable: "the server can't be reached right now: check your connection",
    timeout: 'the server did not answer in time: check your connection',
    unknown_group: 'this device does not know that group',
    group_tampered: "this group's history on this device failed its checks, so the group is frozen here",
    op_refused: 'the server sent a change to the group that does not check out, so it was refused',
    verification: 'something the server sent did not pass its checks, so it was refused',
    not_allowed: "the group's rules don't allow that",
    not_found: 'what that refers to is not on this device',
    held: 'it waits, and goes by itself once the server can take it and this device has caught up with the group',
    removed: 'you are no longer a member of this group',
    left: 'you left this group',
    bad_invite: 'this invite is not valid: it may be damaged or out of date',
    agreement_not_received: "the group's agreement has not arrived yet: wait a moment, then read it",
    agreement_changed: "the group's agreement has changed: read the new version",
    encrypt: 'it could not be encrypted',
    encode: 'it could not be prepared for sending (a fault in this version of Confide)',
    pending: 'it is waiting to be sent',
    closed: 'Confide has stopped in this tab: reload the page',
    invalid: 'something in it was not accepted: check what you entered',
    unexpected: 'the server answered something unexpected',
    incompatible_server: 'the server runs another version of Confide: one of them must be updated',
    sync_stalled: "the server stopped sending this group's history: it is asked again later",
    // Linking a device (LINK-API.md; the server's link_unknown, link_busy,
    // device_list_refused and device_unlinked, then the core's LinkFailed codes).
    link_unknown: 'that code is not waiting to be linked: it may be mistyped, or more than ten minutes old',
    link_busy: 'the server is busy with other links: try again in a moment',
    device_list_refused: "the server refused the new list of your devices: try again after a moment",
    device_unlinked: 'the server refuses this device as unlinked, but none of your other devices says so: your messages are kept',
    unlinked: 'this device was unlinked from another of your devices',
    link_bad_code: "that is not a linking code: it has ten letters and digits, like ABCDE-23456",
    link_mismatch: 'linking stopped because the other device answered something unexpected (someone may be trying to listen in): start again, and only link devices you hold',
    link_cancelled: 'linking was stopped on one of the devices',
    link_bad_bundle: 'the account the other device sent did not pass its checks, so nothing was linked',
    too_many_devices: 'you already have the most devices an account can have: unlink one first',
    last_device: 'this is your only device: unlinking it would lose your account',
    no_link: 'no linking is under way: start again',
    identity_changed: "your account's key is not the one this device knew: compare your devices before going on",
    stale_device_list: 'your list of devices changed on another device meanwhile: try again',
    too_large: "your groups' recent messages are too large to hand to the new device",
    // client-web's own.
    no_profile: 'there is no profile in this browser yet',
    profile_exists: 'a profile is already open here',
    busy: 'Confide is still opening or locking the profile: wait a moment',
    no_crypto: 'this browser offers no secure random numbers',
    // The SDK's own (protocol.ts `SdkErrorCode`).
    elsewhere: 'Confide is open in another tab: use that tab, or close it and reload this page',
    no_core: 'this version of Confide could not start',
    unknown_method: 'this version of Confide does not know that request',
    worker_failed: 'Confide stopped working in this tab: reload the page',
    version_mismatch: 'another version of Confide is open in another tab: reload every tab',
  }),
);

/**
 * The code of a rejected call, if it is a Confide error: the code when it is a plain word
 * (`/^[a-z_]{1,40}$/`), else `unknown`. `undefined` for anything else that was thrown.
 */
export function errorCode(error: unknown): string | undefined {
  if (!isCoreError(error)) return undefined;
  return CODE.test(error.code) ? error.code : 'unknown';
}

/**
 * What went wrong as a clause to go inside a sentence, in our words only (never the error's own
 * message): "you are muted in this group for now". A code we do not know gets a general clause
 * naming it.
 */
export function errorText(error: unknown): string {
  const code = errorCode(error);
  if (code === undefined) return 'something went wrong';
  return REASONS.get(code) ?? `something went wrong (error code ${code})`;
}

/** What went wrong as a sentence of its own: {@link errorText} with a capital and a full stop. */
export function errorSentence(error: unknown): string {
  const text = errorText(error);
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}
