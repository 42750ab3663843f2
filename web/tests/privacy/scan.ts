// Scans a browser profile directory for plaintext markers (web/tests/profile-privacy.spec.ts).
//
// Every regular file under the directory is read whole and searched bytewise for each marker
// as UTF-8 and as UTF-16LE: Chromium keeps localStorage and DOM strings (session restore) as
// UTF-16 or Latin-1, and V8's serialisation in IndexedDB writes one-byte or two-byte strings.
// Symbolic links (Chromium's Singleton* lock links) and sockets are not followed. Files of a
// LevelDB database (IndexedDB, Local Storage, Session Storage…) are also searched decoded:
// tables decompressed and logs reassembled (./leveldb.ts), since Snappy can split a text.

import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';

import { decodeLog, decodeTable } from './leveldb.ts';

/** One thing that must (or must not) be on disk, with the text searched for. */
export interface Marker {
  /** What it is, for failure messages: "a message Bob sent". */
  what: string;
  /** The exact text searched for: a random token no other data contains. */
  text: string;
}

/** Where a marker was found. */
export interface Hit {
  marker: Marker;
  /** The file, relative to the profile directory. */
  file: string;
  encoding: 'utf-8' | 'utf-16le';
  /** Where in the file: its bytes, or its LevelDB contents decoded. */
  view: string;
  /** Byte offset of the first occurrence in that view. */
  offset: number;
  /** The bytes around it, printable ASCII and dots. */
  context: string;
}

/** What a scan read and found. */
export interface ScanResult {
  /** Every regular file read, relative to the profile directory. */
  files: string[];
  /** Bytes read in all. */
  bytes: number;
  /** LevelDB tables and logs also searched decoded. */
  decoded: number;
  /** Files read per first path component below `Default/` (or the top level). */
  perArea: Map<string, number>;
  hits: Hit[];
}

/** A random lowercase token of `length` letters and digits, unique to this run. */
export function token(length = 24): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(length);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

function walk(dir: string, found: string[]): void {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const stat = lstatSync(path);
    if (stat.isDirectory()) walk(path, found);
    else if (stat.isFile()) found.push(path);
  }
}

/** The area a file belongs to: `Default/IndexedDB`, `Default/Sessions`, `Local State`… */
function area(file: string): string {
  const parts = file.split(sep);
  const [top = file, next] = parts;
  return top === 'Default' && next !== undefined ? `Default/${next}` : top;
}

/** A LevelDB table or log decoded, when `path` is one (its directory holds `CURRENT`). */
function decodeLevelDb(path: string, content: Buffer): { view: string; bytes: Buffer } | undefined {
  if (!existsSync(join(dirname(path), 'CURRENT'))) return undefined;
  const name = basename(path);
  try {
    if (name.endsWith('.ldb') || name.endsWith('.sst')) {
      return { view: 'LevelDB table, decompressed', bytes: decodeTable(content) };
    }
    if (name.endsWith('.log') || name.startsWith('MANIFEST-')) {
      return { view: 'LevelDB log, reassembled', bytes: decodeLog(content) };
    }
  } catch (error) {
    throw new Error(`cannot decode the LevelDB file ${path}: ${String(error)}`);
  }
  return undefined;
}

/** Bytes as printable ASCII, anything else a dot. */
function printable(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[^\x20-\x7e]/g, '.');
}

/** Reads every regular file under `root` and searches it for each of `markers`. */
export function scan(root: string, markers: Marker[]): ScanResult {
  const paths: string[] = [];
  walk(root, paths);
  const needles = markers.flatMap((marker) => [
    { marker, encoding: 'utf-8' as const, bytes: Buffer.from(marker.text, 'utf8') },
    { marker, encoding: 'utf-16le' as const, bytes: Buffer.from(marker.text, 'utf16le') },
  ]);
  const result: ScanResult = { files: [], bytes: 0, decoded: 0, perArea: new Map(), hits: [] };
  for (const path of paths) {
    const file = relative(root, path);
    let content: Buffer;
    try {
      content = readFileSync(path);
    } catch (error) {
      // A file the closed browser still had open and removed is gone; anything else is a
      // file the scan could not read, which must not pass silently.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`cannot read ${file}: ${String(error)}`);
    }
    result.files.push(file);
    result.bytes += content.length;
    result.perArea.set(area(file), (result.perArea.get(area(file)) ?? 0) + 1);
    const views = [{ view: 'on disk', bytes: content }];
    const decoded = decodeLevelDb(path, content);
    if (decoded !== undefined) {
      views.push(decoded);
      result.decoded += 1;
    }
    for (const { view, bytes } of views) {
      for (const needle of needles) {
        const offset = bytes.indexOf(needle.bytes);
        if (offset >= 0) {
          const context = printable(bytes.subarray(Math.max(0, offset - 96), offset + 160));
          result.hits.push({ marker: needle.marker, file, encoding: needle.encoding, view, offset, context });
        }
      }
    }
  }
  return result;
}

/** One line per area ("Default/IndexedDB: 7 files") and the totals, for the test's output. */
export function describe(result: ScanResult): string {
  const areas = [...result.perArea.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, count]) => `  ${name}: ${count}`);
  return [
    `${result.files.length} files, ${result.bytes} bytes (${result.decoded} LevelDB tables and logs also decoded):`,
    ...areas,
  ].join('\n');
}

/** A hit as a sentence with the bytes around it, to find what wrote it. */
export function explain(hit: Hit): string {
  const text = hit.marker.text.length > 40 ? `${hit.marker.text.slice(0, 40)}…` : hit.marker.text;
  const where = `${hit.file} (${hit.view}) as ${hit.encoding} at byte ${hit.offset}`;
  return `${hit.marker.what} (${JSON.stringify(text)}) in ${where}: …${hit.context}…`;
}
