// Decodes Chromium's LevelDB files (IndexedDB, Local Storage, Session Storage…) so the
// profile scan sees their contents as stored, not only their bytes on disk:
//
// - a table (`*.ldb`) keeps its entries in blocks that are usually Snappy-compressed, and
//   keys are prefix-compressed within a block, so text can be split by back-references;
// - a log (`*.log`, `MANIFEST-*`) splits records at 32 KiB block boundaries, with a 7-byte
//   header inside any record that crosses one.
//
// Both formats as in LevelDB's doc/table_format.md and doc/log_format.md; Snappy as in its
// format_description.txt. Anything these do not understand throws: a file the scan cannot
// read must fail the test, not pass it.

/** LevelDB's table magic number, the last 8 bytes of a table (little-endian). */
const TABLE_MAGIC = Buffer.from([0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);
/** A table's footer: two block handles, padding and the magic number. */
const FOOTER_LENGTH = 48;
/** A log's block size and record header length. */
const LOG_BLOCK = 32768;
const LOG_HEADER = 7;

/** A cursor over bytes with LevelDB's varints. */
class Reader {
  constructor(
    readonly bytes: Buffer,
    public at = 0,
  ) {}

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const byte = this.bytes[this.at++];
      if (byte === undefined) throw new Error('truncated varint');
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new Error('varint too long');
  }

  take(length: number): Buffer {
    if (this.at + length > this.bytes.length) throw new Error('truncated data');
    const slice = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return slice;
  }
}

/** Decompresses a raw Snappy block. */
export function snappyDecompress(input: Buffer): Buffer {
  const reader = new Reader(input);
  const length = reader.varint();
  const out = Buffer.alloc(length);
  let written = 0;
  while (reader.at < input.length) {
    const tag = input[reader.at++]!;
    if ((tag & 3) === 0) {
      let literal = tag >> 2;
      if (literal >= 60) {
        const bytes = literal - 59;
        literal = reader.take(bytes).readUIntLE(0, bytes);
      }
      literal += 1;
      reader.take(literal).copy(out, written);
      written += literal;
      continue;
    }
    let copy: number;
    let offset: number;
    if ((tag & 3) === 1) {
      copy = ((tag >> 2) & 7) + 4;
      offset = ((tag >> 5) << 8) | reader.take(1)[0]!;
    } else if ((tag & 3) === 2) {
      copy = (tag >> 2) + 1;
      offset = reader.take(2).readUInt16LE(0);
    } else {
      copy = (tag >> 2) + 1;
      offset = reader.take(4).readUInt32LE(0);
    }
    if (offset === 0 || offset > written || written + copy > length) throw new Error('bad Snappy copy');
    // Byte by byte: a copy may overlap what it writes.
    for (let i = 0; i < copy; i++) out[written + i] = out[written - offset + i]!;
    written += copy;
  }
  if (written !== length) throw new Error('Snappy length mismatch');
  return out;
}

/** The contents of the block at `handle`, decompressed. */
function readBlock(file: Buffer, handle: Reader): Buffer {
  const offset = handle.varint();
  const size = handle.varint();
  if (offset + size + 5 > file.length) throw new Error('block handle past the end');
  const contents = file.subarray(offset, offset + size);
  const type = file[offset + size];
  if (type === 0) return contents;
  if (type === 1) return snappyDecompress(contents);
  throw new Error(`unknown block compression ${type}`);
}

/** A block's entries as full keys and values (prefix compression undone). */
function blockEntries(block: Buffer): { key: Buffer; value: Buffer }[] {
  if (block.length < 4) throw new Error('block too short');
  const restarts = block.readUInt32LE(block.length - 4);
  const end = block.length - 4 - 4 * restarts;
  if (end < 0) throw new Error('bad restart count');
  const reader = new Reader(block.subarray(0, end));
  const entries: { key: Buffer; value: Buffer }[] = [];
  let key = Buffer.alloc(0);
  while (reader.at < end) {
    const shared = reader.varint();
    const unshared = reader.varint();
    const valueLength = reader.varint();
    if (shared > key.length) throw new Error('bad shared key length');
    key = Buffer.concat([key.subarray(0, shared), reader.take(unshared)]);
    entries.push({ key, value: reader.take(valueLength) });
  }
  return entries;
}

/** A table's data: every entry's key then value, decompressed, one after the other. */
export function decodeTable(file: Buffer): Buffer {
  if (file.length < FOOTER_LENGTH || !file.subarray(file.length - 8).equals(TABLE_MAGIC)) {
    throw new Error('not a LevelDB table');
  }
  const footer = new Reader(file.subarray(file.length - FOOTER_LENGTH));
  footer.varint(); // The metaindex block's handle: filters, no data.
  footer.varint();
  const parts: Buffer[] = [];
  for (const { value } of blockEntries(readBlock(file, footer))) {
    for (const entry of blockEntries(readBlock(file, new Reader(value)))) parts.push(entry.key, entry.value);
  }
  return Buffer.concat(parts);
}

/** A log's records, reassembled across blocks, one after the other. */
export function decodeLog(file: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let block = 0; block < file.length; block += LOG_BLOCK) {
    const end = Math.min(file.length, block + LOG_BLOCK);
    let at = block;
    while (at + LOG_HEADER <= end) {
      const length = file.readUInt16LE(at + 4);
      const type = file[at + 6];
      // Zero type and length: preallocated or trailing space.
      if (type === 0 && length === 0) break;
      if (at + LOG_HEADER + length > end) throw new Error('log record past its block');
      parts.push(file.subarray(at + LOG_HEADER, at + LOG_HEADER + length));
      at += LOG_HEADER + length;
    }
  }
  return Buffer.concat(parts);
}
