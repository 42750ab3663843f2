// The lines among a conversation's messages that are not messages. Kept apart from the app's
// state so that the timeline's rules can be checked without a browser.

/** A line among the messages that is not a message: a join, a removal, a hidden message. */
export interface SystemLine {
  /** Tells lines apart. */
  key: string;
  /** When. */
  at: number;
  /** Goes after the message with this seq, if known. */
  afterSeq?: number;
  /** What happened, in plain words. */
  text: string;
  /** `placeholder` for messages that are hidden (unverifiable, deleted). */
  kind: 'system' | 'placeholder';
}
