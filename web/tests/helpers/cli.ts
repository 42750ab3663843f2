// The `confide` CLI as a second person in the web tests (the facilitator of the member tests):
// the debug binary `CONFIDE_CLI_BIN` (set by `cargo xtask test-web`), one profile directory,
// the passphrase from the environment and the fast key derivation tests use.

import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { TARGET, type Server } from '../fixtures.ts';

/** The passphrase of every CLI person in the tests. */
const PASSPHRASE = 'a long passphrase for the test facilitator';

/** One person on the CLI. */
export class CliPerson {
  readonly dir: string;
  private readonly bin: string;

  private constructor(bin: string, dir: string) {
    this.bin = bin;
    this.dir = dir;
  }

  /** `confide init` against `server` (its loopback address and the pin it printed). */
  static init(server: Server, name: string): CliPerson {
    const person = CliPerson.blank(name);
    person.ok(['init', ...serverArgs(server), '--name', name]);
    return person;
  }

  /** A profile directory with no profile in it yet (for `confide device link`). */
  static blank(name: string): CliPerson {
    const bin = process.env.CONFIDE_CLI_BIN ?? join(TARGET, 'debug', 'confide');
    if (!existsSync(bin)) {
      throw new Error(`${bin} is missing: build it with \`cargo build -p confide-cli\` (cargo xtask test-web does)`);
    }
    return new CliPerson(bin, join(mkdtempSync(join(tmpdir(), 'confide-cli-')), name));
  }

  /** Starts `confide --profile DIR ARGS…` with stdin, stdout and stderr as pipes. */
  spawn(args: string[]): ChildProcessWithoutNullStreams {
    return spawn(this.bin, ['--profile', this.dir, ...args], {
      env: { ...process.env, CONFIDE_PASSPHRASE: PASSPHRASE, CONFIDE_INSECURE_FAST_KDF: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }

  /** Runs `confide --profile DIR ARGS…` and returns stdout; throws with stderr on failure. */
  ok(args: string[]): string {
    try {
      return execFileSync(this.bin, ['--profile', this.dir, ...args], {
        encoding: 'utf8',
        env: { ...process.env, CONFIDE_PASSPHRASE: PASSPHRASE, CONFIDE_INSECURE_FAST_KDF: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? '';
      throw new Error(`confide ${args.join(' ')} failed: ${stderr}`);
    }
  }

  /** Runs with `--json` and parses what it printed. */
  json<T = unknown>(args: string[]): T {
    return JSON.parse(this.ok(['--json', ...args])) as T;
  }

  /** Deletes the profile directory. */
  remove(): void {
    rmSync(join(this.dir, '..'), { recursive: true, force: true });
  }
}

/** The `--server` and `--pin` that reach `server` (its loopback address and the pin it printed). */
export function serverArgs(server: Server): string[] {
  const pin = /--pin (\S+)/.exec(server.output.join('\n'))?.[1];
  if (pin === undefined) throw new Error(`the server printed no --pin:\n${server.output.join('\n')}`);
  const port = new URL(server.origin).port;
  return ['--server', `wss://127.0.0.1:${port}`, '--pin', pin];
}
