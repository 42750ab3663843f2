// The web app's budgets (docs/web-app-plan.md §8), measured in Chromium against the release
// confide-server on loopback, for `cargo xtask web-budgets`, which reads the samples this script
// writes (CONFIDE_BUDGETS_OUT, JSON) and puts their medians into BENCHMARKS.md. It measures and
// asserts nothing about time: a wait that never ends fails the run, a slow one is a figure.
//
// Times are taken inside the page with performance.now() (milliseconds since the navigation
// started), at the first animation frame after the DOM shows what is waited for, so Playwright's
// polling adds nothing:
//
// - first load, cold cache: a fresh context per sample; navigation start → the welcome screen's
//   "Create my profile" button is in the DOM and enabled (the app sets no performance mark);
// - unlock: a profile created once; reload, fill the passphrase, click Unlock → "Your groups";
// - a group with 10,000 messages: `confide-bench seed-group` (a real confide_client) creates the
//   group and prints an invite link; the browser member joins with it; the seeder then sends the
//   messages; once the groups list counts them all, click on the group → the last message, five
//   times; then scroll to the very top (every "Show earlier messages" page, then page by page
//   from the bottom to the top of the whole history) with long tasks (> 50 ms) counted by a
//   PerformanceObserver, and the rows in the DOM counted.

import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import type { Page } from '@playwright/test';

import { TARGET, expect, test } from '../tests/fixtures.ts';

/** Samples per figure. */
const SAMPLES = 5;
/** Messages in the big group. */
const MESSAGES = Number(process.env.CONFIDE_BUDGETS_MESSAGES ?? '10000');
const PASSPHRASE = 'violet harbour lantern quietly';

/** Everything measured, written to CONFIDE_BUDGETS_OUT at the end of each test. */
const results: Record<string, unknown> = {};

function save(name: string, value: unknown): void {
  results[name] = value;
  const out = process.env.CONFIDE_BUDGETS_OUT;
  if (out !== undefined) writeFileSync(out, JSON.stringify(results, null, 2));
  console.log(`budgets: ${name} = ${JSON.stringify(value)}`);
}

/** The in-page recorder: long tasks, clicks, and "when did this condition first hold". */
interface Recorder {
  longTasks: { start: number; duration: number }[];
  lastClick: number | undefined;
  marks: Record<string, number>;
  watch(name: string, condition: () => boolean): void;
}

declare global {
  interface Window {
    __budgets: Recorder;
  }
}

/** Installed in every page of the budgets' contexts before the app's own scripts. */
function installRecorder(): void {
  const recorder: Recorder = {
    longTasks: [],
    lastClick: undefined,
    marks: {},
    watch(name, condition) {
      delete recorder.marks[name];
      let done = false;
      const check = () => {
        if (done || !condition()) return;
        done = true;
        observer.disconnect();
        // The first frame after the DOM holds it: about when it is painted.
        requestAnimationFrame(() => {
          recorder.marks[name] = performance.now();
        });
      };
      const observer = new MutationObserver(check);
      observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
      check();
    },
  };
  window.__budgets = recorder;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) recorder.longTasks.push({ start: entry.startTime, duration: entry.duration });
  }).observe({ type: 'longtask', buffered: true });
  document.addEventListener('click', () => (recorder.lastClick = performance.now()), { capture: true });
  // First load: the welcome screen (or the unlock screen) can be used.
  recorder.watch('usable', () =>
    [...document.querySelectorAll('button')].some(
      (b) => !b.disabled && ['Create my profile', 'Unlock'].includes(b.textContent?.trim() ?? ''),
    ),
  );
}

/** Waits for the in-page mark `name` and returns it. */
async function mark(page: Page, name: string, timeout = 120_000): Promise<number> {
  const handle = await page.waitForFunction((n) => window.__budgets.marks[n], name, { timeout, polling: 50 });
  return (await handle.jsonValue()) as number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

test('first load with a cold cache', async ({ browser, baseURL }) => {
  const samples: { usable: number; responseEnd: number; domContentLoaded: number; load: number }[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    // A fresh context: empty HTTP cache, no service worker, no storage.
    const context = await browser.newContext({ baseURL });
    await context.addInitScript(installRecorder);
    const page = await context.newPage();
    await page.goto('/');
    const usable = await mark(page, 'usable');
    await page.waitForLoadState('load');
    const nav = await page.evaluate(() => {
      const [entry] = performance.getEntriesByType('navigation') as PerformanceNavigationTiming[];
      return { responseEnd: entry?.responseEnd ?? 0, domContentLoaded: entry?.domContentLoadedEventEnd ?? 0, load: entry?.loadEventEnd ?? 0 };
    });
    await expect(page.getByRole('heading', { name: 'Welcome', exact: true })).toBeVisible();
    samples.push({ usable, ...nav });
    await context.close();
  }
  save('firstLoad', { samples, medianUsableMs: median(samples.map((s) => s.usable)) });
});

test('unlock', async ({ context, page }) => {
  await context.addInitScript(installRecorder);
  await page.goto('/');
  await page.getByRole('textbox', { name: 'Name in your groups' }).fill('Una');
  await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(PASSPHRASE);
  await page.getByRole('button', { name: 'Create my profile' }).click();
  await expect(page.getByRole('heading', { name: 'Your groups' })).toBeVisible({ timeout: 120_000 });
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    await page.reload();
    await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
    await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(PASSPHRASE);
    await page.evaluate(() =>
      window.__budgets.watch('unlocked', () =>
        [...document.querySelectorAll('h2')].some((h) => h.textContent?.trim() === 'Your groups'),
      ),
    );
    await page.getByRole('button', { name: 'Unlock' }).click();
    const unlocked = await mark(page, 'unlocked');
    const clicked = await page.evaluate(() => window.__budgets.lastClick ?? Number.NaN);
    samples.push(unlocked - clicked);
  }
  save('unlock', { samplesMs: samples, medianMs: median(samples) });
});

/** `confide-bench seed-group` against the test server; lines it prints arrive in order. */
function startSeeder(origin: string, pin: string) {
  const bin = process.env.CONFIDE_BENCH_BIN ?? join(TARGET, 'release', 'confide-bench');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with \`cargo build --release -p confide-bench\``);
  const port = new URL(origin).port;
  const args = ['seed-group', '--server', `wss://localhost:${port}`, '--pin', pin, '--messages', String(MESSAGES)];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const waiting: { prefix: string; done: (line: string) => void }[] = [];
  const seen: string[] = [];
  let failed: Error | undefined;
  const exited = new Promise<void>((done) =>
    child.once('exit', (code) => {
      if (code !== 0) failed = new Error(`seed-group exited (${code}):\n${stderr.join('')}`);
      done();
    }),
  );
  createInterface({ input: child.stdout }).on('line', (line) => {
    seen.push(line);
    for (const w of waiting.filter((w) => line.startsWith(w.prefix))) w.done(line);
  });
  const line = (prefix: string) =>
    new Promise<string>((done, fail) => {
      const already = seen.find((l) => l.startsWith(prefix));
      if (already !== undefined) return done(already);
      waiting.push({ prefix, done });
      void exited.then(() => fail(failed ?? new Error(`seed-group ended without printing "${prefix}"`)));
    });
  return { line, exited, kill: () => child.exitCode === null && child.kill('SIGTERM') };
}

test('a group with 10,000 messages', async ({ browser, baseURL, server }) => {
  // A context of its own rather than the tests' one, which fails on the first uncaught error:
  // a benchmark reports the app's errors (below) instead of stopping at them.
  const context = await browser.newContext({ baseURL });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  context.on('weberror', (error) => pageErrors.push(error.error().message));
  context.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(`console: ${message.text()}`);
  });
  const pin = /--pin (\S+)/.exec(server.output.join('\n'))?.[1];
  if (pin === undefined) throw new Error(`the server printed no --pin:\n${server.output.join('\n')}`);
  const seeder = startSeeder(server.origin, pin);
  try {
    const link = (await seeder.line('invite ')).slice('invite '.length);
    await context.addInitScript(installRecorder);
    await page.goto(`/${new URL(link).hash}`);
    await page.getByRole('textbox', { name: 'Name in your groups' }).fill('Bob');
    await page.getByRole('textbox', { name: 'Passphrase', exact: true }).fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Create my profile' }).click();
    await page.getByRole('button', { name: 'Join the group' }).click({ timeout: 120_000 });
    console.log('budgets: joining');
    await seeder.line('joined ');
    console.log('budgets: joined');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
    const sent = await seeder.line('sent ');
    const seeding = Date.now();
    const group = page.locator('button.group').first();
    // Synced: the groups list counts every message as new.
    console.log(`budgets: ${sent}; waiting for the member's sync`);
    // Synced: the groups list's count of new messages has not moved for ten seconds. (It may
    // stay a few short of all of them: messages the server's rate limit held back are sent
    // again later, out of order.)
    let unread = '';
    let stableSince = Date.now();
    const syncDeadline = Date.now() + Math.max(120_000, MESSAGES * 60);
    while (Date.now() - stableSince < 10_000) {
      if (Date.now() > syncDeadline) throw new Error(`still syncing: ${unread}; page errors: ${pageErrors.join('; ')}`);
      await page.waitForTimeout(500);
      const now = (await group.textContent()) ?? '';
      if (now !== unread || !now.includes("Last message")) [unread, stableSince] = [now, Date.now()];
    }
    const newCount = Number(/(\d+) new/.exec(unread)?.[1] ?? 'NaN');
    const syncedAfterSeedS = (Date.now() - seeding - 10_000) / 1000;

    const opens: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Groups' }).click();
      await expect(page.getByRole('log', { name: 'Messages' })).toHaveCount(0);
      // The last row of the log (the highest index in the DOM) shows a seeded message.
      await page.evaluate(() => {
        window.__budgets.watch('opened', () => {
          const rows = [...document.querySelectorAll<HTMLElement>('[role=log] [data-index]')];
          const lastRow = rows.sort((a, b) => Number(b.dataset.index) - Number(a.dataset.index))[0];
          return lastRow?.querySelector('.text')?.textContent?.startsWith('seed message') ?? false;
        });
      });
      await group.click();
      const opened = await mark(page, 'opened');
      const clicked = await page.evaluate(() => window.__budgets.lastClick ?? Number.NaN);
      opens.push(opened - clicked);
    }

    // To the very top: every earlier page, then the whole history page by page from the bottom.
    const scroll = await page.evaluate(async (first) => {
      const frame = () => new Promise<number>((done) => requestAnimationFrame(done));
      const log = document.querySelector<HTMLElement>('[role=log]');
      if (log === null) throw new Error('no message log');
      const earlier = () =>
        [...document.querySelectorAll('button')].find((b) => b.textContent?.trim() === 'Show earlier messages');
      const rows = () => log.querySelectorAll('[data-index]').length;
      const started = performance.now();
      let pages = 0;
      let maxRows = rows();
      for (;;) {
        log.scrollTop = 0;
        await frame();
        const button = earlier();
        if (button === undefined) break;
        const height = log.scrollHeight;
        button.click();
        pages++;
        const until = performance.now() + 30_000;
        while (log.scrollHeight === height && performance.now() < until) await frame();
        maxRows = Math.max(maxRows, rows());
      }
      log.scrollTop = 0;
      for (let i = 0; i < 10; i++) await frame();
      const loadedAll = performance.now();
      const topShown = [...log.querySelectorAll('.text')].some((p) => p.textContent === first);
      const items = Math.max(...[...log.querySelectorAll<HTMLElement>('[data-index]')].map((r) => Number(r.dataset.index))) + 1;
      // Now the whole history is loaded: from the bottom to the top, one page per frame.
      log.scrollTop = log.scrollHeight;
      for (let i = 0; i < 10; i++) await frame();
      const pageStart = performance.now();
      let steps = 0;
      while (log.scrollTop > 0) {
        log.scrollTop = Math.max(0, log.scrollTop - log.clientHeight);
        await frame();
        steps++;
        maxRows = Math.max(maxRows, rows());
      }
      for (let i = 0; i < 10; i++) await frame();
      const pagedEnd = performance.now();
      const topShownAgain = [...log.querySelectorAll('.text')].some((p) => p.textContent === first);
      const tasks = (from: number, to: number) => window.__budgets.longTasks.filter((t) => t.start >= from && t.start < to);
      const summary = (list: { duration: number }[]) => ({
        count: list.length,
        totalMs: list.reduce((s, t) => s + t.duration, 0),
        maxMs: list.reduce((m, t) => Math.max(m, t.duration), 0),
      });
      return {
        earlierPages: pages,
        loadAllMs: loadedAll - started,
        loadAllLongTasks: summary(tasks(started, loadedAll)),
        topShown,
        items,
        pageScroll: { steps, ms: pagedEnd - pageStart, longTasks: summary(tasks(pageStart, pagedEnd)), topShown: topShownAgain },
        maxRowsInDom: maxRows,
        rowsInDomAtEnd: rows(),
      };
    }, 'seed message 1');
    save('history', {
      messages: MESSAGES,
      seeder: sent,
      syncedAfterSeedS,
      newCount,
      openSamplesMs: opens,
      openMedianMs: median(opens),
      scroll,
      pageErrors: [...new Set(pageErrors)],
    });
    await seeder.exited;
  } finally {
    seeder.kill();
    await context.close();
  }
});
