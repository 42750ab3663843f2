// The invite in the address: `https://host/#invite=…`. It is read once, at start, and the
// fragment is removed from the address bar and the history at once (history.replaceState), so
// the invite is kept in memory only and never lingers in the tab's history or a bookmark.

/** Takes the invite link out of `location`, if there is one. */
export function takeInviteFromLocation(): string | undefined {
  const hash = location.hash;
  if (!hash.startsWith('#invite=')) return undefined;
  const link = `${location.origin}/${hash}`;
  history.replaceState(null, '', `${location.pathname}${location.search}`);
  return link.length > '#invite='.length ? link : undefined;
}
