// The PWA and the trust surface (issue 15, M7): what the app shell mounts and calls.
//
// - `registerServiceWorker()`: call once at start (App.svelte's onMount).
// - `UpdateBanner`: mount at the top of the app; it shows itself while a new version waits.
// - `About`: the About screen (props `{confide}`), with the release hash.
// - `notifyEvent(event, context)`: call with every core event; `requestNotificationPermission()`
//   from a Settings button.

export { default as About } from './About.svelte';
export { default as UpdateBanner } from './UpdateBanner.svelte';
export {
  applyUpdate,
  forgetServiceWorker,
  pendingUpdate,
  registerServiceWorker,
  type PendingUpdate,
} from './service-worker.ts';
export {
  noticeFor,
  notificationTag,
  notificationsAllowed,
  notifyEvent,
  requestNotificationPermission,
  type Notice,
  type NotifyContext,
} from './notify.ts';
export { fetchReleaseHash, groupHex, sha256Hex } from './hash.ts';
