// Who may take a job over (issue 9): on the same host a live pid with its recorded start time
// is alive however old its heartbeat (a laptop that slept, a stopped process); a dead or
// reused pid is not; on another host only the heartbeat tells. A holder that was taken over
// and comes back writes nothing more: it checks its lease before every step and every write.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDbReadOnly } from '../../src/engine/db.js';
import { JobsStore } from '../../src/engine/jobs-store.js';
import { leaseIsLive, type LeaseRow } from '../../src/engine/leases.js';
import { processStartTime } from '../../src/platform/adapter.js';
import { spawnCli, waitForLine } from '../helpers/cli.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

const lease = (o: Partial<LeaseRow>): LeaseRow => ({
  subject: 'service:x',
  job_id: 'j',
  owner: 'o',
  pid: process.pid,
  host: 'here',
  started_at: 0,
  heartbeat_at: 0,
  ttl_ms: 1000,
  pid_start: processStartTime(process.pid),
  ...o,
});

describe('leaseIsLive', () => {
  const now = 1_000_000;
  it('same host: a live pid with its start time is alive, whatever its heartbeat', () => {
    expect(leaseIsLive(lease({ heartbeat_at: 0 }), now, 'here')).toBe(true);
  });
  it('same host: a reused pid (another start time) or a dead pid is not', () => {
    expect(leaseIsLive(lease({ heartbeat_at: now, pid_start: 'linux:other-boot:1' }), now, 'here')).toBe(false);
    expect(leaseIsLive(lease({ heartbeat_at: now, pid: 2 ** 22 + 12345 }), now, 'here')).toBe(false);
  });
  it('same host, a lease from before start times were kept: the heartbeat still counts', () => {
    expect(leaseIsLive(lease({ pid_start: null, heartbeat_at: now - 500 }), now, 'here')).toBe(true);
    expect(leaseIsLive(lease({ pid_start: null, heartbeat_at: now - 5000 }), now, 'here')).toBe(false);
  });
  it('another host: only the heartbeat tells', () => {
    expect(leaseIsLive(lease({ host: 'there', heartbeat_at: now - 500 }), now, 'here')).toBe(true);
    expect(leaseIsLive(lease({ host: 'there', heartbeat_at: now - 5000 }), now, 'here')).toBe(false);
  });
});

/** Every file under `dir` with its size and content hash. */
async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && !/engine\.db/.test(e.name)) {
        const s = await stat(p);
        out.set(path.relative(dir, p), `${s.size}:${createHash('sha256').update(await readFile(p)).digest('hex')}`);
      }
    }
  };
  await walk(dir);
  return out;
}

function eventCount(home: string): number {
  const db = openDbReadOnly(path.join(home, 'engine.db'))!;
  try {
    return new JobsStore(db).events().length;
  } finally {
    db.close();
  }
}

describe('a holder taken over', () => {
  let b: Bench;
  beforeAll(async () => {
    b = await makeBench();
    await b.publish({ version: '1.0.0', modelBytes: 6 * 1024 * 1024 });
  });

  it('a stopped holder is alive on its own host; taken over from another host, it writes nothing when it resumes', async () => {
    const home = await b.newHome();
    b.proxy.rate = 512 * 1024;
    const holder = spawnCli(['install', 'demo-echo@1.0.0', '--no-start', '--home', home, '--hub', b.proxy.url, '--json'], { MODELHUB_HOST_ID: 'host-a', MODELHUB_LEASE_TTL_MS: '1500' });
    const holderExit = new Promise<number | null>((r) => holder.once('exit', (code) => r(code)));
    try {
      await waitForLine(holder, 'progress');
      for (let i = 0; ![...b.proxy.bytes.values()].some((n) => n > 256 * 1024); i++) {
        if (i > 600) throw new Error('no bytes downloaded');
        await new Promise((r) => setTimeout(r, 50));
      }
      holder.kill('SIGSTOP');
      await new Promise((r) => setTimeout(r, 2500)); // its heartbeat is now older than its ttl

      // From the same host, the stopped holder is alive: recover leaves its job alone.
      const same = await b.cli(home, ['recover'], { MODELHUB_HOST_ID: 'host-a' });
      expect(same.result).toMatchObject({ ok: true, recovered: [] });

      // From another host sharing the home, only the stale heartbeat tells: taken over.
      b.proxy.rate = 0;
      const taken = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'], { MODELHUB_HOST_ID: 'host-b' });
      expect(taken.result).toMatchObject({ ok: true, current: '1.0.0' });
      const files = await tree(home);
      const events = eventCount(home);

      holder.kill('SIGCONT');
      // It stops at its next check, having written nothing.
      expect(await holderExit).not.toBe(0);
      expect(await tree(home)).toEqual(files);
      expect(eventCount(home)).toBe(events);
      expect(await currentOf(home, 'demo-echo')).toBe('1.0.0');
    } finally {
      b.proxy.rate = 0;
      holder.kill('SIGCONT');
      holder.kill('SIGKILL');
    }
  });
});
