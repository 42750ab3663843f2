// A confide-server a test can stop and start again on the same port and data directory (the
// fixtures' one lives as long as the Playwright worker and cannot be restarted). It uses the
// fixtures' server's development certificate, copied into its own data directory, so the
// browser (pinned to that certificate) and the CLI (pinned to the same key) trust it as well.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { TARGET, type Server } from '../fixtures.ts';

/** What `confide-server` prints once it listens, with the address it bound. */
const LISTENING = /confide-server listening on wss:\/\/(\S+)/;

/** One run of the server binary: its port, what it printed, and how to stop it. */
interface Run {
  port: string;
  stop: () => Promise<void>;
}

async function run(dataDir: string, listen: string, output: string[]): Promise<Run> {
  const bin = process.env.CONFIDE_SERVER_BIN ?? join(TARGET, 'debug', 'confide-server');
  const webDir = process.env.CONFIDE_WEB_DIR ?? join(TARGET, 'web');
  const args = ['--dev', '--data-dir', dataDir, '--listen', listen, '--web-dir', webDir];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const port = await new Promise<string>((done, fail) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      const address = LISTENING.exec(line)?.[1];
      if (address !== undefined) done(address.slice(address.lastIndexOf(':') + 1));
    });
    void exited.then(() => fail(new Error(`${bin} ${args.join(' ')} exited before listening:\n${output.join('\n')}`)));
  });
  return {
    port,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A server that can go down and come back, as a {@link Server} for the helpers that take one. */
export class RestartableServer {
  private current: Run | undefined;

  private constructor(
    /** The fixtures' `Server` shape: origin, pin, data directory and output. */
    readonly server: Server,
    private readonly port: string,
    run: Run,
  ) {
    this.current = run;
  }

  /** Starts one on a free loopback port, with `trusted`'s certificate (the fixtures' server). */
  static async start(trusted: Server): Promise<RestartableServer> {
    const dataDir = mkdtempSync(join(tmpdir(), 'confide-web-restartable-'));
    for (const file of ['dev-cert.pem', 'dev-key.pem']) copyFileSync(join(trusted.dataDir, file), join(dataDir, file));
    const output: string[] = [];
    const first = await run(dataDir, '127.0.0.1:0', output);
    const server: Server = { origin: `https://localhost:${first.port}`, spki: trusted.spki, dataDir, output };
    return new RestartableServer(server, first.port, first);
  }

  /** Whether it is running. */
  get up(): boolean {
    return this.current !== undefined;
  }

  /** Stops the process (SIGTERM) and waits until it exited. */
  async stop(): Promise<void> {
    await this.current?.stop();
    this.current = undefined;
  }

  /** Starts it again on the same port with the same data directory. */
  async restart(): Promise<void> {
    await this.stop();
    this.current = await run(this.server.dataDir, `127.0.0.1:${this.port}`, this.server.output);
  }

  /** Stops it and deletes its data directory. */
  async remove(): Promise<void> {
    await this.stop();
    rmSync(this.server.dataDir, { recursive: true, force: true });
  }
}
