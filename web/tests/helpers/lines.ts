// A CLI process that prints one JSON object per line (`--json`): the next object, as it comes,
// with what the process wrote to stderr in the error if it ends or takes too long first.

import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

export class JsonLines {
  private readonly queue: unknown[] = [];
  private readonly waiting: ((value: unknown) => void)[] = [];
  private readonly stderr: string[] = [];
  private ended: string | undefined;

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => this.stderr.push(chunk));
    createInterface({ input: child.stdout }).on('line', (line) => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return; // Not one of the JSON lines (a prompt, say).
      }
      const next = this.waiting.shift();
      if (next !== undefined) next(value);
      else this.queue.push(value);
    });
    child.once('exit', (code) => {
      this.ended = `exited with ${code}`;
    });
  }

  /** The next JSON object it prints, within `ms`. */
  next<T>(ms = 60_000): Promise<T> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued as T);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no JSON line within ${ms} ms (${this.ended ?? 'still running'}): ${this.stderr.join('')}`));
      }, ms);
      this.waiting.push((value) => {
        clearTimeout(timer);
        resolve(value as T);
      });
    });
  }

  /** Writes `line` to its stdin. */
  write(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Waits until it exited; its exit code. */
  exit(): Promise<number | null> {
    if (this.child.exitCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((done) => this.child.once('exit', (code) => done(code)));
  }

  /** What it wrote to stderr. */
  get errors(): string {
    return this.stderr.join('');
  }

  /** Stops it if it still runs. */
  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}
