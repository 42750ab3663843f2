// A member on the command line (plan §6: "Dave on the CLI"): the debug `confide` binary with its
// own profile directory and passphrase, talking to the fixtures' server with its certificate pin.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { TARGET, type Server } from '../fixtures.ts';

/** What `confide-server --dev` prints for clients: the pin the CLI takes. */
const PIN = /--pin (\S+)/;

/** The result of one CLI run. */
export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** One person using the CLI. */
export class CliPerson {
  readonly home: string;

  private constructor(
    readonly name: string,
    private readonly bin: string,
  ) {
    this.home = mkdtempSync(join(tmpdir(), `confide-cli-${name.toLowerCase()}-`));
  }

  /** Creates `name`'s profile on `server` (`confide init`). */
  static init(server: Server, name: string): CliPerson {
    const bin = process.env.CONFIDE_CLI_BIN ?? join(TARGET, 'debug', 'confide');
    if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with \`cargo build -p confide-cli\``);
    const pin = PIN.exec(server.output.join('\n'))?.[1];
    if (pin === undefined) throw new Error(`the server printed no --pin:\n${server.output.join('\n')}`);
    const wss = server.origin.replace('https://', 'wss://');
    const person = new CliPerson(name, bin);
    person.ok(['init', '--server', wss, '--pin', pin, '--name', name]);
    return person;
  }

  /** Runs `confide ARGS` as this person. */
  run(args: string[]): Run {
    const result = spawnSync(this.bin, args, {
      env: {
        ...process.env,
        CONFIDE_HOME: this.home,
        CONFIDE_PASSPHRASE: `passphrase of ${this.name} 4242`,
        // The CLI's test-only fast key derivation, as helpers/cli.ts uses.
        CONFIDE_INSECURE_FAST_KDF: '1',
      },
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Runs `confide ARGS` and fails with its output unless it succeeded. */
  ok(args: string[]): string {
    const result = this.run(args);
    if (result.status !== 0) {
      throw new Error(`confide ${args.join(' ')} as ${this.name} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
    }
    return result.stdout;
  }

  /** Runs `confide --json ARGS` and parses what it printed. */
  json(args: string[]): unknown {
    return JSON.parse(this.ok(['--json', ...args])) as unknown;
  }

  /** Deletes the profile directory. */
  remove(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}
