// The Playwright fixtures every web test uses (plan §6):
//
// - `server` (one per Playwright worker): the debug confide-server (`CONFIDE_SERVER_BIN`, set by
//   `cargo xtask test`) with `--dev` on a free loopback port, a fresh data directory and the
//   built app (`CONFIDE_WEB_DIR`, by default target/web), and the SPKI pin of its development
//   certificate.
// - `browser` (one per Playwright worker): Debian's Chromium at /usr/bin/chromium, trusting
//   exactly that certificate (`--ignore-certificate-errors-spki-list`; no blanket
//   ignoreHTTPSErrors). It is never downloaded: when it is missing the test fails and says how
//   to install it.
// - `context`: every page in it fails the test on a CSP or Trusted Types violation, a console
//   error or an uncaught exception (`problems` lists them as they happen, and is asserted empty
//   when the test ends, also for contexts a test opens itself).
// - `baseURL`: the server's https origin, so `page.goto('/')` opens the app.

import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { test as base, chromium, expect } from '@playwright/test';

/** Debian's Chromium: the only browser the tests run in. */
export const CHROMIUM = '/usr/bin/chromium';

/** The repository's root (web/tests/ is two levels down). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Cargo's target directory, where the server binary, the built app and screenshots live. */
export const TARGET = process.env.CONFIDE_TARGET_DIR ?? join(REPO, 'target');

/** What `confide-server` prints once it listens, with the address it bound. */
const LISTENING = /confide-server listening on wss:\/\/(\S+)/;

/** Chromium's flags besides the certificate pin: the ones this closed network needs. */
export const CHROMIUM_FLAGS = [
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** A running confide-server serving the app. */
export interface Server {
  /** `https://localhost:PORT`, the app's origin (the dev certificate names localhost). */
  origin: string;
  /** base64 SHA-256 of the dev certificate's SubjectPublicKeyInfo: Chromium's pin. */
  spki: string;
  /** The server's data directory (a fresh temporary one). */
  dataDir: string;
  /** Everything the server printed, for failure messages. */
  output: string[];
}

/** The pin `--ignore-certificate-errors-spki-list` takes for the certificate in `pem`. */
export function spkiPin(pem: string | Buffer): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/** The built app the server serves (`CONFIDE_WEB_DIR`, by default target/web). */
export const WEB_DIR = process.env.CONFIDE_WEB_DIR ?? join(TARGET, 'web');

/** One run of the server binary: the port it bound, and how to stop it (and wait). */
export interface Run {
  port: string;
  stop: () => Promise<void>;
}

/**
 * Runs the debug confide-server (`CONFIDE_SERVER_BIN`) with `args` until it says it listens;
 * what it prints goes into `output`. Every test server is started through here.
 */
export async function runServer(args: string[], output: string[]): Promise<Run> {
  const bin = process.env.CONFIDE_SERVER_BIN ?? join(TARGET, 'debug', 'confide-server');
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: build it with \`cargo build -p confide-server\` (cargo xtask test does)`);
  }
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const port = await new Promise<string>((done, fail) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      const address = LISTENING.exec(line)?.[1];
      if (address !== undefined) done(address.slice(address.lastIndexOf(':') + 1));
    });
    void exited.then((code) =>
      fail(new Error(`${bin} ${args.join(' ')} exited (${code}) before listening:\n${output.join('\n')}`)),
    );
  });
  return {
    port,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A confide-server with `--dev` on a free loopback port and a fresh data directory, plus
 * `args`; stopping it deletes the directory.
 */
export async function startServer(args: string[]): Promise<{ server: Server; port: string; stop: () => Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'confide-web-test-'));
  const output: string[] = [];
  const run = await runServer(['--dev', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...args], output);
  const server: Server = {
    origin: `https://localhost:${run.port}`,
    spki: spkiPin(readFileSync(join(dataDir, 'dev-cert.pem'))),
    dataDir,
    output,
  };
  const stop = async () => {
    await run.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { server, port: run.port, stop };
}

/** The fixtures' server: {@link startServer} serving the built app. */
async function startAppServer(): Promise<{ server: Server; stop: () => Promise<void> }> {
  if (!existsSync(join(WEB_DIR, 'asset-manifest.json'))) {
    throw new Error(`${WEB_DIR} holds no built app: run \`cargo xtask web\``);
  }
  // Every test of a worker registers its people from this one loopback address (and linked
  // devices register too): more than the default burst of 20 registrations an address gets.
  const configDir = mkdtempSync(join(tmpdir(), 'confide-web-test-config-'));
  const config = join(configDir, 'server.toml');
  writeFileSync(config, 'registration_burst = 500\nregistrations_per_hour = 5000\n');
  const started = await startServer(['--web-dir', WEB_DIR, '--config', config]);
  return {
    server: started.server,
    stop: async () => {
      await started.stop();
      rmSync(configDir, { recursive: true, force: true });
    },
  };
}

/** Worker-scoped fixtures: one server and one browser per Playwright worker. */
interface WorkerFixtures {
  server: Server;
}

/** Test-scoped fixtures. */
interface TestFixtures {
  /** CSP violations, console errors and uncaught exceptions of the test's pages so far. */
  problems: string[];
}

export const test = base.extend<TestFixtures, WorkerFixtures>({
  server: [
    async ({}, use) => {
      const { server, stop } = await startAppServer();
      try {
        await use(server);
      } finally {
        await stop();
      }
    },
    { scope: 'worker' },
  ],

  browser: [
    async ({ server }, use) => {
      if (!existsSync(CHROMIUM)) {
        throw new Error(
          `${CHROMIUM} is missing and the web tests never download a browser: install Debian's ` +
            'Chromium with `apt-get install -y chromium` (cargo xtask test does it for you)',
        );
      }
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        // Chromium's sandbox needs user namespaces a container (and root) may not have.
        chromiumSandbox: false,
        args: [`--ignore-certificate-errors-spki-list=${server.spki}`, ...CHROMIUM_FLAGS],
      });
      try {
        await use(browser);
      } finally {
        await browser.close();
      }
    },
    { scope: 'worker' },
  ],

  baseURL: async ({ server }, use) => {
    await use(server.origin);
  },

  // Asserted when the test ends, whichever contexts reported into it: the fixtures' own, and
  // those a test opens with `watchedContext`.
  problems: async ({}, use) => {
    const problems: string[] = [];
    await use(problems);
    expect(problems, 'CSP violations, console errors or uncaught exceptions').toEqual([]);
  },

  context: async ({ context, problems }, use, testInfo) => {
    // Recorded for `cargo xtask test`, which checks that every test ran in /usr/bin/chromium.
    const browser = context.browser();
    testInfo.annotations.push({
      type: 'browser',
      description: `${CHROMIUM} ${browser?.browserType().name() ?? '?'} ${browser?.version() ?? '?'}`,
    });
    // Chromium reports CSP and Trusted Types violations on the console too; the event adds the
    // blocked URL and the source line, and catches a violation that logs nothing.
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        console.error(
          `CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || 'inline'} ` +
            `at ${event.sourceFile}:${event.lineNumber}`,
        );
      });
    });
    context.on('console', (message) => {
      if (message.type() === 'error') {
        const where = message.page()?.url() ?? message.worker()?.url() ?? 'a worker';
        problems.push(`console error on ${where}: ${message.text()}`);
      }
    });
    context.on('weberror', (error) => {
      problems.push(`uncaught on ${error.page()?.url() ?? '?'}: ${error.error().message}`);
    });
    await use(context);
  },
});

export { expect };
