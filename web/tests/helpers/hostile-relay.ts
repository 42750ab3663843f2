// A malicious server for the browser tests: it presents the real server's development
// certificate (the browser trusts "the server", and this is the server), relays every connection
// to the real one behind it, and can withhold a removal (and every later op of its group) from
// what the server sends — the attack PROTOCOL.md §12 names "withhold the newest ops" — or refuse
// every group's sync with a reason of its own. The Rust suites have a richer one
// (tests/src/evil.rs); the browser needs its own because Playwright cannot route a worker's
// WebSocket (microsoft/playwright#37048), and the web app's core runs in a worker.
//
// HTTP requests pass through unchanged. A WebSocket upgrade is relayed without compression (the
// extension offer is taken out), so that the frames can be read and rewritten here: frames to
// the server pass unchanged unless the relay answers them itself, frames from it pass unchanged
// unless the relay withholds something in them.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';

import type { Server } from '../fixtures.ts';

/** The end of an HTTP head. */
const HEAD_END = '\r\n\r\n';

/** WebSocket opcodes (RFC 6455 §5.2). */
const CONTINUATION = 0x0;
const TEXT = 0x1;

/** A relay between the browser and `server` that can turn malicious. */
export class HostileRelay {
  /**
   * While set, the first removal (a `remove` op) the server sends, and every later op of its
   * group, are taken out of `op` pushes and sync pages; cleared, the relay is honest again.
   */
  withholdRemoval = false;
  /** Where withholding began: the group and the seq of the removal, once one was seen. */
  withholding: { group: string; from: number } | undefined;
  /** The ops withheld so far: their bodies' `type`, in order. */
  readonly withheld: string[] = [];
  /** The `type` of every frame the browser sent while ops were being withheld, in order. */
  readonly sentWhileWithholding: string[] = [];
  /**
   * While set, the browser's `sync` requests do not reach the server: the relay answers each
   * with a `not_member` error whose message is this text (a server's free text, never to be
   * shown); unset, they pass.
   */
  refuseSyncsWith: string | undefined;
  /** How many syncs the relay has refused. */
  refusedSyncs = 0;
  /** What went wrong reading a frame (the frame was passed on unchanged); empty in a good run. */
  readonly errors: string[] = [];
  /** Every connection's two sockets, destroyed by {@link close}. */
  private readonly sockets = new Set<TLSSocket>();
  /** The browser's side of each WebSocket connection, destroyed by {@link dropWebSockets}. */
  private readonly webSockets = new Set<TLSSocket>();

  private constructor(
    /** `https://localhost:PORT`: the origin to open the app at, through the relay. */
    readonly origin: string,
    private readonly listener: TlsServer,
  ) {}

  /** Starts one on a free loopback port, in front of `server`. */
  static async start(server: Server): Promise<HostileRelay> {
    const cert = readFileSync(join(server.dataDir, 'dev-cert.pem'));
    const key = readFileSync(join(server.dataDir, 'dev-key.pem'));
    const upstreamPort = Number(new URL(server.origin).port);
    let relay: HostileRelay | undefined;
    const listener = createServer({ cert, key, ALPNProtocols: ['http/1.1'] }, (browser) => {
      const upstream = connect({
        host: '127.0.0.1',
        port: upstreamPort,
        servername: 'localhost',
        ca: cert,
        ALPNProtocols: ['http/1.1'],
      });
      relay?.relay(browser, upstream);
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const port = (listener.address() as AddressInfo).port;
    relay = new HostileRelay(`https://localhost:${port}`, listener);
    return relay;
  }

  /** Whether ops are being withheld now (a removal was seen and the relay is still hostile). */
  isWithholding(): boolean {
    return this.withholdRemoval && this.withholding !== undefined;
  }

  /**
   * Drops every WebSocket connection, as a network that fails would: the app connects again
   * (and syncs its groups on connecting).
   */
  dropWebSockets(): void {
    for (const socket of this.webSockets) socket.destroy();
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }

  /**
   * Relays one browser connection: its first request decides whether it is a WebSocket (the
   * browser opens a connection of its own for each WebSocket; a later upgrade on a reused
   * HTTP connection would pass raw and unread, and the test's checks on what was withheld
   * would fail).
   */
  private relay(browser: TLSSocket, upstream: TLSSocket): void {
    this.sockets.add(browser);
    this.sockets.add(upstream);
    // One side ended: the other is ended too, after what was written to it (a close frame,
    // say) has gone; an error drops both at once.
    const drop = () => {
      browser.destroy();
      upstream.destroy();
    };
    browser.on('error', drop);
    upstream.on('error', drop);
    browser.on('end', () => upstream.end());
    upstream.on('end', () => browser.end());
    browser.on('close', () => {
      this.sockets.delete(browser);
      this.webSockets.delete(browser);
      upstream.end();
    });
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      browser.end();
    });
    let head = Buffer.alloc(0);
    const onRequest = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const at = head.indexOf(HEAD_END);
      if (at < 0) return;
      browser.off('data', onRequest);
      const request = head.subarray(0, at).toString('latin1');
      const rest = head.subarray(at + HEAD_END.length);
      if (/^upgrade:\s*websocket\s*$/im.test(request)) {
        // Without permessage-deflate, so that the frames can be read here.
        const lines = request.split('\r\n').filter((line) => !/^sec-websocket-extensions:/i.test(line));
        upstream.write(Buffer.from(lines.join('\r\n') + HEAD_END, 'latin1'));
        this.webSockets.add(browser);
        this.relayBrowserFrames(browser, upstream, rest);
        this.relayServerFrames(upstream, browser);
      } else {
        upstream.write(head);
        browser.pipe(upstream);
        upstream.pipe(browser);
      }
    };
    browser.on('data', onRequest);
  }

  /**
   * Passes the browser's frames on as they are (`first`: what came after its handshake), or
   * answers a `sync` itself while syncs are refused, and notes the type of each frame while ops
   * are being withheld.
   */
  private relayBrowserFrames(browser: TLSSocket, upstream: TLSSocket, first: Buffer): void {
    let buffer = Buffer.alloc(0);
    const read = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const frame = readFrame(buffer);
        if (frame === undefined) return;
        buffer = buffer.subarray(frame.length);
        // The app's frames are small and whole; a fragment's type is read from its first part.
        const type =
          frame.opcode === TEXT || frame.opcode === CONTINUATION
            ? /"type":"([a-z_]+)"/.exec(frame.payload.toString('utf8'))?.[1] ?? '?'
            : undefined;
        if (this.isWithholding() && type !== undefined) this.sentWhileWithholding.push(type);
        const refusal = this.refuseSyncsWith;
        if (refusal !== undefined && type === 'sync' && frame.opcode === TEXT && frame.fin) {
          const { id } = JSON.parse(frame.payload.toString('utf8')) as { id?: unknown };
          this.refusedSyncs++;
          browser.write(textFrame(JSON.stringify({ type: 'error', id, code: 'not_member', message: refusal })));
          continue;
        }
        upstream.write(frame.raw);
      }
    };
    if (first.length > 0) read(first);
    browser.on('data', read);
  }

  /** Passes the server's handshake answer on, then its frames, rewritten where the relay says. */
  private relayServerFrames(upstream: TLSSocket, browser: TLSSocket): void {
    let buffer = Buffer.alloc(0);
    let handshakeDone = false;
    let message: Buffer[] = [];
    upstream.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!handshakeDone) {
        const at = buffer.indexOf(HEAD_END);
        if (at < 0) return;
        const answer = buffer.subarray(0, at + HEAD_END.length);
        browser.write(answer);
        buffer = buffer.subarray(at + HEAD_END.length);
        handshakeDone = true;
        const head = answer.toString('latin1');
        if (!head.startsWith('HTTP/1.1 101') || /^sec-websocket-extensions:/im.test(head)) {
          // Refused, or compressed after all: not frames this relay can read.
          this.errors.push(`the server answered the upgrade with: ${head.split('\r\n')[0]}`);
          upstream.removeAllListeners('data');
          browser.write(buffer);
          upstream.pipe(browser);
          return;
        }
      }
      for (;;) {
        const frame = readFrame(buffer);
        if (frame === undefined) return;
        buffer = buffer.subarray(frame.length);
        if (frame.opcode === TEXT || (frame.opcode === CONTINUATION && message.length > 0)) {
          message.push(frame.payload);
          if (!frame.fin) continue;
          const text = Buffer.concat(message).toString('utf8');
          message = [];
          for (const out of this.rewrite(text)) browser.write(textFrame(out));
        } else {
          // Control frames and binary ones, as they came.
          browser.write(frame.raw);
        }
      }
    });
  }

  /**
   * What the browser gets for the server's frame `text`: itself, or what is left of it. A
   * frame that cannot be read as expected passes unchanged and is noted in {@link errors}.
   */
  private rewrite(text: string): string[] {
    try {
      return this.withhold(text);
    } catch (error) {
      this.errors.push(`a frame from the server could not be read: ${String(error)}`);
      return [text];
    }
  }

  /** {@link rewrite}, throwing on what it cannot read. */
  private withhold(text: string): string[] {
    if (!this.withholdRemoval) return [text];
    const frame = JSON.parse(text) as { type?: string; group?: string; op?: SignedOp; ops?: SignedOp[] };
    if (frame.type === 'op' && frame.op !== undefined && frame.group !== undefined) {
      return this.keeps(frame.group, frame.op) ? [text] : [];
    }
    if (frame.type === 'sync_page' && Array.isArray(frame.ops) && frame.group !== undefined) {
      const group = frame.group;
      const kept = frame.ops.filter((op) => this.keeps(group, op));
      if (kept.length === frame.ops.length) return [text];
      // Only the ops change: the rest of the page (its `next_op_seq` too) is the server's, as a
      // withholding server would send it (tests/src/evil.rs `map_ops` does the same). The
      // page's numbers are small, so reading and writing it again keeps them exact.
      return [JSON.stringify({ ...frame, ops: kept })];
    }
    return [text];
  }

  /** Whether `signed`, an op of `group`, goes to the browser (noting it if it does not). */
  private keeps(group: string, signed: SignedOp): boolean {
    const op = JSON.parse(Buffer.from(signed.op, 'base64').toString('utf8')) as {
      seq?: unknown;
      body?: { type?: unknown };
    };
    if (typeof op.seq !== 'number' || typeof op.body?.type !== 'string') throw new Error('an op without a seq or a body');
    if (this.withholding === undefined && this.withholdRemoval && op.body.type === 'remove') {
      this.withholding = { group, from: op.seq };
    }
    const withheld =
      this.withholdRemoval && this.withholding?.group === group && op.seq >= this.withholding.from;
    if (withheld) this.withheld.push(op.body.type);
    return !withheld;
  }
}

/** A signed op as frames carry it: the op's JSON (base64) and its signature. */
interface SignedOp {
  op: string;
  sig: string;
}

/** One frame read off the front of `buffer`, or `undefined` if it is not all there yet. */
function readFrame(
  buffer: Buffer,
): { fin: boolean; opcode: number; payload: Buffer; raw: Buffer; length: number } | undefined {
  if (buffer.length < 2) return undefined;
  const fin = (buffer[0]! & 0x80) !== 0;
  const opcode = buffer[0]! & 0x0f;
  const masked = (buffer[1]! & 0x80) !== 0;
  let size = buffer[1]! & 0x7f;
  let at = 2;
  if (size === 126) {
    if (buffer.length < 4) return undefined;
    size = buffer.readUInt16BE(2);
    at = 4;
  } else if (size === 127) {
    if (buffer.length < 10) return undefined;
    size = Number(buffer.readBigUInt64BE(2));
    at = 10;
  }
  const mask = masked ? buffer.subarray(at, at + 4) : undefined;
  if (masked) at += 4;
  if (buffer.length < at + size) return undefined;
  const payload = Buffer.from(buffer.subarray(at, at + size));
  if (mask !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
  const length = at + size;
  return { fin, opcode, payload, raw: buffer.subarray(0, length), length };
}

/** An unmasked, unfragmented text frame (a server's, RFC 6455 §5.1). */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  let header: Buffer;
  if (payload.length < 126) {
    header = Buffer.from([0x80 | TEXT, payload.length]);
  } else if (payload.length < 0x10000) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | TEXT;
    header[1] = 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | TEXT;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([header, payload]);
}
