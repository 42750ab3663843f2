// Links other people wrote (a meeting's video link, a resource's link): shown whole as text, and
// opened only when the person presses a button, in a new tab that gets neither this page
// (`noopener`) nor its address (`noreferrer`). Only https links are ever opened: the core refuses
// anything else in a document, and this checks again before opening.

/** The most characters a link may have (the protocol's `MAX_LINK_CHARS`). */
export const MAX_LINK_CHARS = 2048;

/**
 * Whether `text` is a link the app may open: `https://`, then printable ASCII without spaces,
 * at most {@link MAX_LINK_CHARS} characters, and a host (the protocol's `validate_link`, plus
 * what a URL needs).
 */
export function isHttpsLink(text: string): boolean {
  if (!text.startsWith('https://') || text.length > MAX_LINK_CHARS || !/^[\x21-\x7e]+$/.test(text)) return false;
  try {
    const url = new URL(text);
    return url.protocol === 'https:' && url.hostname !== '' && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

/**
 * Opens `link` in a new tab with `rel="noopener noreferrer"`, if it is an https link (else
 * nothing happens). Called only from a button the person pressed.
 */
export function openLink(link: string): boolean {
  if (!isHttpsLink(link)) return false;
  const anchor = document.createElement('a');
  anchor.href = new URL(link).href;
  anchor.target = '_blank';
  anchor.rel = 'noopener noreferrer';
  anchor.referrerPolicy = 'no-referrer';
  anchor.click();
  return true;
}
