// Hashes as people compare them: SHA-256 with SubtleCrypto, shown in groups of four hex digits.

/** Lowercase hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** `hex` in groups of `size` characters separated by spaces, for reading aloud and comparing. */
export function groupHex(hex: string, size = 4): string {
  const groups: string[] = [];
  for (let at = 0; at < hex.length; at += size) groups.push(hex.slice(at, at + size));
  return groups.join(' ');
}

/** The release hash of the app this page runs: SHA-256 of the `/asset-manifest.json` bytes. */
export async function fetchReleaseHash(): Promise<string> {
  // Through the service worker when it controls the page: then it is the manifest of the shell
  // it checked and serves, which is the code running here.
  const response = await fetch('/asset-manifest.json');
  if (!response.ok) throw new Error(`the server answered ${response.status} for /asset-manifest.json`);
  return sha256Hex(await response.arrayBuffer());
}
