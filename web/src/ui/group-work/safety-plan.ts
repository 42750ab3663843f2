// The six sections of a safety plan (Stanley–Brown), in the order they are used in a crisis,
// with the words the app shows for each.

import type { SafetyPlan } from '../../wasm-pkg/confide_client_web.js';

/** A section's key in `SafetyPlan`. */
export type SectionKey = keyof SafetyPlan;

/** The sections in order: heading, a hint, and the label of the box that adds an entry. */
export const SECTIONS: readonly { key: SectionKey; title: string; hint: string; add: string }[] = [
  {
    key: 'warningSigns',
    title: 'My warning signs',
    hint: 'Thoughts, feelings or situations that tell me a crisis may be coming.',
    add: 'A warning sign',
  },
  {
    key: 'copingSteps',
    title: 'Things I can do on my own',
    hint: 'What helps me cope without contacting anyone: a walk, music, breathing.',
    add: 'Something I can do',
  },
  {
    key: 'peopleAndPlaces',
    title: 'People and places that take my mind off things',
    hint: 'Who I can be with, and where I can go, to feel a bit better.',
    add: 'A person or place',
  },
  {
    key: 'contacts',
    title: 'People and services I can ask for help',
    hint: 'Friends or family I can tell, and professionals or helplines, with how to reach them.',
    add: 'Someone to contact',
  },
  {
    key: 'safeEnvironment',
    title: 'Making my surroundings safer',
    hint: 'What I can put away or ask someone to keep for me.',
    add: 'A step to be safer',
  },
  {
    key: 'reasons',
    title: 'What matters most to me',
    hint: 'The people, plans and things worth staying safe for.',
    add: 'Something that matters',
  },
];

/** A plan with nothing in it. */
export function emptyPlan(): SafetyPlan {
  return { warningSigns: [], copingSteps: [], peopleAndPlaces: [], contacts: [], safeEnvironment: [], reasons: [] };
}

/** Whether nothing is written in `plan`. */
export function planIsEmpty(plan: SafetyPlan): boolean {
  return SECTIONS.every((s) => plan[s.key].length === 0);
}

/** Most entries in a section, and characters in an entry (the protocol's limits). */
export const MAX_PLAN_ENTRIES = 20;
export const MAX_PLAN_ENTRY_CHARS = 500;
