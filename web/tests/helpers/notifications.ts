// Which notifications a page asked for. Installed before the page's scripts run
// (`addInitScript`): `ServiceWorkerRegistration.prototype.showNotification` and the
// `Notification` constructor record their title and options in `window.__notifications` and show
// nothing (a headless browser has no notification centre to look at). The permission is granted
// for real (`grantPermissions`), so the app's own check that notifications are allowed runs.

import type { BrowserContext, Page } from '@playwright/test';

/** One notification the page asked for. */
export interface Requested {
  /** `"service-worker"` or `"page"`: which API was called. */
  via: string;
  title: string;
  /** The options, as JSON (body, tag, data…). */
  options: string;
}

/** Grants notifications to `origin` and records, in every page of `context`, what is shown. */
export async function spyOnNotifications(context: BrowserContext, origin: string): Promise<void> {
  await context.grantPermissions(['notifications'], { origin });
  await context.addInitScript(() => {
    const shown: { via: string; title: string; options: string }[] = [];
    Object.defineProperty(window, '__notifications', { value: shown });
    const record = (via: string, title: unknown, options: unknown) =>
      shown.push({ via, title: String(title), options: JSON.stringify(options ?? {}) });
    if (typeof ServiceWorkerRegistration === 'function') {
      ServiceWorkerRegistration.prototype.showNotification = function (title, options) {
        record('service-worker', title, options);
        return Promise.resolve();
      };
    }
    const Original = window.Notification;
    if (typeof Original === 'function') {
      const Spy = function (title: string, options?: NotificationOptions) {
        record('page', title, options);
        return Object.assign(new EventTarget(), { close: () => undefined });
      } as unknown as typeof Notification;
      Object.defineProperty(Spy, 'permission', { get: () => Original.permission });
      Object.defineProperty(Spy, 'requestPermission', { value: () => Original.requestPermission() });
      Object.defineProperty(window, 'Notification', { value: Spy, configurable: true, writable: true });
    }
  });
}

/** The notifications `page` asked for so far. */
export function notificationsOf(page: Page): Promise<Requested[]> {
  return page.evaluate(() => (window as unknown as { __notifications?: Requested[] }).__notifications ?? []);
}
