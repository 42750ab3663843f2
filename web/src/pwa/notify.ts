// Notifications while the app is open (plan §3, WEB-UX.md "Nothing leaks by accident"):
// "New message in <label>" and, for an urgent request, "Someone asked for a facilitator in
// <label>". Never the content, the sender or the request's text: a notification can show on a
// lock screen. The label is the member's own name for the group (kept encrypted in the profile).
//
// Only when the member would not see it otherwise: the tab is hidden, or another group is open.
// One notification per group at a time (its tag is the group), so a busy evening stays one line,
// and several tabs showing the same event collapse into one.
//
// Permission is asked only when the member presses a button (Settings calls
// requestNotificationPermission): browsers ignore or penalise a prompt that comes from nowhere.

import type { CoreEvent } from '../sdk/protocol.ts';

/** What the app knows when an event arrives: the group on screen and whether the tab is seen. */
export interface NotifyContext {
  /** The group the member is looking at, if any. */
  openGroup: string | undefined;
  /** The group's label as the member named it, for the notification's text. */
  labelOf: (group: string) => string;
}

/** A notification to show: its title and the group it is about (its tag). */
export interface Notice {
  /** The whole text: no body, so nothing else can leak. */
  title: string;
  /** The group, used as the tag. */
  group: string;
}

/** The tag of a group's notifications: a new one replaces the last instead of piling up. */
export function notificationTag(group: string): string {
  return `confide:${group}`;
}

/**
 * What to show for `event`, if anything: only messages and urgent requests, and only when the
 * member is not looking at that group (`hidden`: the tab is not visible).
 */
export function noticeFor(event: CoreEvent, context: NotifyContext, hidden: boolean): Notice | undefined {
  let group: string;
  let title: (label: string) => string;
  switch (event.type) {
    case 'message':
      group = event.message.group;
      title = (label) => `New message in ${label}`;
      break;
    case 'urgentRequest':
      group = event.request.group;
      title = (label) => `Someone asked for a facilitator in ${label}`;
      break;
    default:
      return undefined;
  }
  if (!hidden && context.openGroup === group) return undefined;
  return { title: title(context.labelOf(group)), group };
}

/** Whether this browser can show notifications and the member allowed them. */
export function notificationsAllowed(): boolean {
  return typeof Notification === 'function' && Notification.permission === 'granted';
}

/**
 * Asks the browser for permission to notify. Call it only from a button the member pressed
 * (Settings): resolves to the answer, `"denied"` where the browser has no notifications.
 */
export async function requestNotificationPermission(): Promise<NotificationPermission> {
  if (typeof Notification !== 'function') return 'denied';
  if (Notification.permission !== 'default') return Notification.permission;
  return Notification.requestPermission();
}

/** Shows `notice` through the service worker when one is active, else as a page notification. */
async function show(notice: Notice): Promise<void> {
  const options: NotificationOptions = { tag: notificationTag(notice.group), data: { group: notice.group } };
  const registration =
    'serviceWorker' in navigator ? await navigator.serviceWorker.getRegistration() : undefined;
  if (registration?.active) {
    await registration.showNotification(notice.title, options);
    return;
  }
  const notification = new Notification(notice.title, options);
  notification.onclick = () => {
    window.focus();
    notification.close();
  };
}

/** Shows a notification for `event` when the member should hear of it (see the top of the file). */
export function notifyEvent(event: CoreEvent, context: NotifyContext): void {
  if (!notificationsAllowed()) return;
  const notice = noticeFor(event, context, document.visibilityState !== 'visible');
  if (notice === undefined) return;
  show(notice).catch((error: unknown) => console.warn('Confide: could not show a notification:', error));
}
