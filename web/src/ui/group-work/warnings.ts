// Content warnings in words: a message's topic ids as the group's labels ("Content warning:
// Grief, Self-harm"). An id the group's topics do not define still counts: it is shown as a
// warning without a label, never ignored.

import type { WarningTopic } from '../../wasm-pkg/confide_client_web.js';

/** The labels of `warnings` that the group defines, in the group's order of topics. */
export function warningLabels(warnings: readonly number[], topics: readonly WarningTopic[]): string[] {
  const on = new Set(warnings);
  return topics.filter((t) => on.has(t.id)).map((t) => t.label);
}

/** "Content warning: Grief, Self-harm", or "Content warning" when no label is known. */
export function warningText(warnings: readonly number[], topics: readonly WarningTopic[]): string {
  const labels = warningLabels(warnings, topics);
  return labels.length === 0 ? 'Content warning' : `Content warning: ${labels.join(', ')}`;
}

/**
 * An id for a new topic: one not listed now, chosen at random from 1–65535, so that a topic
 * removed earlier is almost never given its id back (old messages tagged with it, and members
 * who hid it, would otherwise take it for the new topic).
 */
export function nextTopicId(topics: readonly WarningTopic[]): number {
  const used = new Set(topics.map((t) => t.id));
  const draw = new Uint16Array(1);
  for (;;) {
    crypto.getRandomValues(draw);
    const id = draw[0] ?? 0;
    if (id !== 0 && !used.has(id)) return id;
  }
}
