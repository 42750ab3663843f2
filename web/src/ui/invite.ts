// The invite in the address: `https://host/#invite=…`. It is read once, at start, and the
// fragment is removed from the address bar at once (history.replaceState), so it is not in a
// bookmark or a reload, and the app keeps it in memory only. The browser itself has already
// recorded the address it opened (its History and session files, before any script runs):
// SECURITY.md says so, and the groups list takes a pasted link, which avoids it.

/** Takes the invite link out of `location`, if there is one. */
export function takeInviteFromLocation(): string | undefined {
  const hash = location.hash;
  if (!hash.startsWith('#invite=')) return undefined;
  const link = `${location.origin}/${hash}`;
  history.replaceState(null, '', `${location.pathname}${location.search}`);
  return link.length > '#invite='.length ? link : undefined;
}
