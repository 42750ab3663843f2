// Notifications while the app is open ("New message in <label>", never the content by default).
// Being built (issue 15, M7): until then the app notifies nothing.

import type { CoreEvent } from '../sdk/client.ts';

/** What the app knows when an event arrives: the group on screen and whether the tab is seen. */
export interface NotifyContext {
  /** The group the member is looking at, if any. */
  openGroup: string | undefined;
  /** The group's label as the member named it, for the notification's text. */
  labelOf: (group: string) => string;
}

/** Shows a notification for `event` when the member should hear of it. */
export function notifyEvent(event: CoreEvent, context: NotifyContext): void {
  void event;
  void context;
}
