// A malicious server for the browser tests: it presents the real server's development
// certificate (the browser trusts "the server", and this is the server), relays every connection
// to the real one behind it, and can withhold group-log ops from what the server sends — the
// attack PROTOCOL.md §12 names "withhold the newest ops". The Rust suites have a richer one
// (tests/src/evil.rs); the browser needs its own because Playwright cannot route a worker's
// WebSocket (microsoft/playwright#37048), and the web app's core runs in a worker.
//
// HTTP requests pass through unchanged. A WebSocket upgrade is relayed without compression (the
// extension offer is taken out), so that the server's frames can be read and rewritten here:
// frames to the server pass unchanged, frames from it pass unchanged unless the relay withholds
// something in them.

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
   * Ops of a group's log from this seq on are taken out of `op` pushes and sync pages, while
   * set; `undefined`: the relay is honest.
   */
  withholdFrom: number | undefined;
  /** The highest op seq the relay has let through so far. */
  highestOpSeq = 0;
  /** How many ops the relay has withheld so far. */
  withheld = 0;

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

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }

  /** Relays one browser connection: its first request decides whether it is a WebSocket. */
  private relay(browser: TLSSocket, upstream: TLSSocket): void {
    const end = () => {
      browser.destroy();
      upstream.destroy();
    };
    browser.on('error', end);
    upstream.on('error', end);
    browser.on('close', end);
    upstream.on('close', end);
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
        upstream.write(lines.join('\r\n') + HEAD_END);
        upstream.write(rest);
        browser.pipe(upstream);
        this.relayServerFrames(upstream, browser);
      } else {
        upstream.write(head);
        browser.pipe(upstream);
        upstream.pipe(browser);
      }
    };
    browser.on('data', onRequest);
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
        browser.write(buffer.subarray(0, at + HEAD_END.length));
        buffer = buffer.subarray(at + HEAD_END.length);
        handshakeDone = true;
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

  /** What the browser gets for the server's frame `text`: itself, or what is left of it. */
  private rewrite(text: string): string[] {
    let frame: { type?: string; seq?: number; ops?: { op: string }[] };
    try {
      frame = JSON.parse(text) as typeof frame;
    } catch {
      return [text];
    }
    if (frame.type === 'op' && typeof frame.seq === 'number') {
      if (this.withholdFrom !== undefined && frame.seq >= this.withholdFrom) {
        this.withheld++;
        return [];
      }
      this.highestOpSeq = Math.max(this.highestOpSeq, frame.seq);
      return [text];
    }
    if (frame.type === 'sync_page' && Array.isArray(frame.ops)) {
      const from = this.withholdFrom;
      const kept = frame.ops.filter((op) => from === undefined || opSeq(op) < from);
      for (const op of kept) this.highestOpSeq = Math.max(this.highestOpSeq, opSeq(op));
      if (kept.length === frame.ops.length) return [text];
      this.withheld += frame.ops.length - kept.length;
      return [JSON.stringify({ ...frame, ops: kept })];
    }
    return [text];
  }
}

/** The seq inside a signed op's bytes (base64 of the op's JSON). */
function opSeq(signed: { op: string }): number {
  const op = JSON.parse(Buffer.from(signed.op, 'base64').toString('utf8')) as { seq?: unknown };
  if (typeof op.seq !== 'number') throw new Error('an op without a seq');
  return op.seq;
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
