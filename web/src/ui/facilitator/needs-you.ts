// What needs a facilitator in a group, as a number the groups list can show as a dot or a count
// (WEB-UX.md "Groups list": a dot for "needs you"), and whether any of it is urgent.

import { readable, type Readable } from 'svelte/store';

import type { Confide, CoreEvent } from '../../sdk/client.ts';

/** What waits for a facilitator in one group. */
export interface NeedsYou {
  /** Join requests, reports and urgent requests waiting. */
  count: number;
  /** Whether an urgent request ("I need a facilitator") is among them. */
  urgent: boolean;
}

/** Nothing waiting. */
export const NOTHING: NeedsYou = { count: 0, urgent: false };

/**
 * Counts what waits for a facilitator in `group`: pending join requests plus the queue's reports
 * and urgent requests. Someone who is not a facilitator there gets {@link NOTHING}.
 */
export async function countNeedsYou(confide: Confide, group: string): Promise<NeedsYou> {
  try {
    const [requests, queue] = await Promise.all([
      confide.joinRequests({ group }),
      confide.facilitatorQueue({ group }),
    ]);
    return {
      count: requests.length + queue.length,
      urgent: queue.some((entry) => entry.item.type === 'urgent'),
    };
  } catch {
    return NOTHING;
  }
}

/** Whether `event` may change what waits for a facilitator in `group`. */
export function touchesNeedsYou(event: CoreEvent, group: string): boolean {
  switch (event.type) {
    case 'joinRequest':
      return event.request.group === group;
    case 'report':
      return event.report.group === group;
    case 'urgentRequest':
      return event.request.group === group;
    case 'groupChanged':
      return event.change.group === group;
    case 'roleChanged':
      return event.group === group;
    case 'synced':
      return true;
    default:
      return false;
  }
}

/**
 * A store of what waits for a facilitator in `group`, kept current from the core's events while
 * subscribed: `$needs.count` for a badge, `$needs.urgent` for the one highlight allowed.
 */
export function needsYouStore(confide: Confide, group: string): Readable<NeedsYou> {
  return readable<NeedsYou>(NOTHING, (set) => {
    let stopped = false;
    let generation = 0;
    const refresh = () => {
      const mine = ++generation;
      void countNeedsYou(confide, group).then((needs) => {
        if (!stopped && mine === generation) set(needs);
      });
    };
    refresh();
    const stop = confide.on((event) => {
      if (touchesNeedsYou(event, group)) refresh();
    });
    return () => {
      stopped = true;
      stop();
    };
  });
}
