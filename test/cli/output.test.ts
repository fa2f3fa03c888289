// What commands print: JSON lines only with --json; on a TTY, a progress bar with speed and ETA.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Output } from '../../src/cli/output.js';
import type { ProgressEvent } from '../../src/client/types.js';
import { withPercent, type ProgressInput } from '../../src/engine/progress.js';
import { ModelhubError } from '../../src/errors.js';

const progress = (p: Partial<ProgressInput>): ProgressEvent =>
  withPercent({ jobId: 'j1', kind: 'install', target: 'x@1.0.0', phase: 'downloading', bytesDone: 0, bytesTotal: 0, speedBps: 0, etaSeconds: null, ts: 1, ...p });

class Capture extends Writable {
  text = '';
  isTTY: boolean;
  columns = 120;
  constructor(tty: boolean) {
    super();
    this.isTTY = tty;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

describe('Output', () => {
  it('--json: progress lines (the library ProgressEvent, same spelling), then one result line, nothing else on stdout', () => {
    const out = new Capture(false);
    const err = new Capture(true);
    const o = new Output(true, out, err);
    const event = progress({ bytesDone: 5, bytesTotal: 10, speedBps: 2.5, etaSeconds: 2 });
    o.progress(event);
    o.result({ id: 'x' }, 'human text');
    const lines = out.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      { type: 'progress', jobId: 'j1', kind: 'install', target: 'x@1.0.0', phase: 'downloading', bytesDone: 5, bytesTotal: 10, percent: 50, speedBps: 2.5, etaSeconds: 2, ts: 1 },
      { type: 'result', ok: true, id: 'x' },
    ]);
    const { type, ...rest } = lines[0]!;
    expect(type).toBe('progress');
    expect(rest).toEqual(event);
    expect(err.text).toBe('');
  });

  it('--json failure carries the code, the message and extra fields', () => {
    const out = new Capture(false);
    const o = new Output(true, out, new Capture(false));
    o.failure(new ModelhubError('HEALTH_CHECK_FAILED', 'no answer'), { rolled_back: true, current: '1.0.0' });
    expect(JSON.parse(out.text)).toMatchObject({ type: 'result', ok: false, rolled_back: true, current: '1.0.0', error: { code: 'HEALTH_CHECK_FAILED', message: 'no answer' } });
  });

  it('on a TTY: a bar with percent, bytes, speed and ETA on stderr, closed by the result', () => {
    const out = new Capture(true);
    const err = new Capture(true);
    const o = new Output(false, out, err);
    o.progress(progress({ bytesDone: 50_000_000, bytesTotal: 100_000_000, speedBps: 25_000_000, etaSeconds: 2 }));
    expect(err.text).toContain('50%');
    expect(err.text).toContain('50.0 MB/100.0 MB');
    expect(err.text).toContain('25.0 MB/s');
    expect(err.text).toContain('ETA 2s');
    expect(err.text).toContain('[###############---------------]');
    o.result({}, 'done');
    expect(err.text.endsWith('\n')).toBe(true);
    expect(out.text).toBe('done\n');
  });

  it('without a TTY and without --json: no bar, just the human result', () => {
    const out = new Capture(false);
    const err = new Capture(false);
    const o = new Output(false, out, err);
    o.progress(progress({ bytesDone: 1, bytesTotal: 2 }));
    o.result({}, 'ok');
    expect(err.text).toBe('');
    expect(out.text).toBe('ok\n');
  });
});
