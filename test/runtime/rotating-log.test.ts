// The supervisor's size-bounded log, as a unit.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_BYTES, RotatingLog } from '../../src/runtime/rotating-log.js';
import { tempDir } from '../helpers/tmp.js';

describe('RotatingLog', () => {
  it('defaults to 10 MiB per file and 3 rotated files', async () => {
    const log = new RotatingLog(path.join(await tempDir(), 'x.log'));
    expect([log.maxBytes, log.keep]).toEqual([10 * 1024 * 1024, 3]);
    expect([DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_KEEP]).toEqual([10 * 1024 * 1024, 3]);
    log.close();
  });

  it('rotates at the bound, keeps `keep` files, and never splits a chunk that fits', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'svc.log');
    const log = new RotatingLog(file, { maxBytes: 100, keep: 2 });
    for (let i = 0; i < 20; i++) log.write(`chunk-${String(i).padStart(2, '0')}-${'x'.repeat(30)}\n`); // 40 bytes each
    log.close();
    expect(readdirSync(dir).sort()).toEqual(['svc.log', 'svc.log.1', 'svc.log.2']);
    for (const f of readdirSync(dir)) expect(statSync(path.join(dir, f)).size).toBeLessThanOrEqual(100);
    // Two whole chunks per file; the newest are kept in order.
    expect(readFileSync(`${file}.2`, 'utf8')).toMatch(/^chunk-14-x+\nchunk-15-x+\n$/);
    expect(readFileSync(`${file}.1`, 'utf8')).toMatch(/^chunk-16-x+\nchunk-17-x+\n$/);
    expect(readFileSync(file, 'utf8')).toMatch(/^chunk-18-x+\nchunk-19-x+\n$/);
  });

  it('splits a chunk bigger than the bound, and appends to an existing file', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'big.log');
    writeFileSync(file, 'previous run\n');
    const log = new RotatingLog(file, { maxBytes: 64, keep: 5 });
    log.write(Buffer.alloc(150, 'a'));
    log.close();
    const sizes = ['big.log.3', 'big.log.2', 'big.log.1', 'big.log'].map((f) => (existsSync(path.join(dir, f)) ? statSync(path.join(dir, f)).size : -1));
    expect(sizes).toEqual([13, 64, 64, 22]);
    expect(readFileSync(`${file}.3`, 'utf8')).toBe('previous run\n');
  });

  it('with keep 0 starts over without keeping anything', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'k0.log');
    const log = new RotatingLog(file, { maxBytes: 10, keep: 0 });
    log.write('0123456789');
    log.write('abc');
    log.note('hello');
    log.close();
    expect(readdirSync(dir)).toEqual(['k0.log']);
    expect(statSync(file).size).toBeLessThanOrEqual(10);
  });
});
