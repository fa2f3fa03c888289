// What a command prints. With --json, stdout carries JSON lines only (SPEC §5): progress
// events while working, then exactly one result line. Without it, people get prose and, on a
// TTY, a progress bar on stderr.
import type { Writable } from 'node:stream';
import type { ProgressEvent } from '../client/types.js';
import { ModelhubError, toModelhubError } from '../errors.js';

function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export class Output {
  private barShown = false;

  constructor(
    readonly json: boolean,
    private readonly stdout: Writable & { isTTY?: boolean } = process.stdout,
    private readonly stderr: Writable & { isTTY?: boolean; columns?: number } = process.stderr,
  ) {}

  private writeLine(value: object): void {
    this.stdout.write(JSON.stringify(value) + '\n');
  }

  /** A JSON line that is neither progress nor the result (e.g. a server's address). */
  event(value: { type: string; [key: string]: unknown }): void {
    if (this.json) this.writeLine(value);
  }

  /** With --json, the library's ProgressEvent as it is, with `"type":"progress"` added. */
  progress(p: ProgressEvent): void {
    if (this.json) {
      this.writeLine({ type: 'progress', ...p });
      return;
    }
    if (this.stderr.isTTY !== true) return;
    const width = 30;
    const total = p.bytesTotal;
    const done = p.bytesDone;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(frac * width);
    const speed = p.speedBps > 0 ? `${formatBytes(p.speedBps)}/s` : '';
    const eta = p.etaSeconds !== null ? `ETA ${Math.ceil(p.etaSeconds)}s` : '';
    const bar = total > 0 ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.percent.toFixed(0).padStart(3)}%` : '';
    const text = `${p.target} ${p.phase} ${bar} ${total > 0 ? `${formatBytes(done)}/${formatBytes(total)}` : ''} ${speed} ${eta}`;
    this.stderr.write(`\r${text.replace(/\s+/g, ' ').trim().slice(0, (this.stderr.columns ?? 100) - 1)}\x1b[K`);
    this.barShown = true;
  }

  private endBar(): void {
    if (this.barShown) {
      this.stderr.write('\n');
      this.barShown = false;
    }
  }

  /** The one result line; `human` is what people see without --json. */
  result(fields: Record<string, unknown>, human?: string): void {
    this.endBar();
    if (this.json) this.writeLine({ type: 'result', ok: true, ...fields });
    else if (human !== undefined) this.stdout.write(human.endsWith('\n') ? human : human + '\n');
  }

  /** A failed result; extra fields (rolled_back, current…) go beside the error. */
  failure(err: unknown, fields: Record<string, unknown> = {}): ModelhubError {
    this.endBar();
    const e = toModelhubError(err);
    if (this.json) {
      this.writeLine({ type: 'result', ok: false, ...fields, error: { code: e.code, message: e.message, retryable: e.retryable, ...(Object.keys(e.details).length > 0 ? { details: e.details } : {}) } });
    } else {
      this.stderr.write(`error ${e.code}: ${e.message}\n`);
    }
    return e;
  }
}
