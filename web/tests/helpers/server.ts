// A confide-server a test can stop and start again on the same port and data directory (the
// fixtures' one lives as long as the Playwright worker and cannot be restarted). It uses the
// fixtures' server's development certificate, copied into its own data directory, so the
// browser (pinned to that certificate) and the CLI (pinned to the same key) trust it as well.

import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { runServer, WEB_DIR, type Run, type Server } from '../fixtures.ts';

/** One run on `listen` over `dataDir`, serving the built app. */
function run(dataDir: string, listen: string, output: string[]): Promise<Run> {
  return runServer(['--dev', '--data-dir', dataDir, '--listen', listen, '--web-dir', WEB_DIR], output);
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
