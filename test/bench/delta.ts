// Delta updates and shared model files (issue 10 §4), bytes counted by the test proxy in front of
// a real hub, installs and pulls by the real CLI:
//
//   service  a code-only change in a BENCH_DELTA_MB (200) MiB package: the update's bytes served,
//            against the package (goal ≤ 2 %), and its time against a full install of the same
//            version on a fresh node
//   models   a second version of a model sharing a BENCH_SHARED_MB (100) MiB file: the shared
//            file's bytes served for it (goal ≤ 2 % of the file), and the disk both versions take
//            against one (goal ≤ 1.3×; blocks as `du` counts them, hard links once)
//
// Env: BENCH_DELTA_MB (200; --quick 48), BENCH_SHARED_MB (100; --quick 24).
import path from 'node:path';
import { createHub } from '../../hub/server.js';
import { readPublicKeyFile } from '../../src/sign/keygen.js';
import { diskUsage, publishModel, publishService } from '../helpers/delta.js';
import { startProxyServer, type Proxy } from '../helpers/proxy-server.js';
import { makeKey } from '../helpers/releases.js';
import { ADMIN_TOKEN, cli, cliOk, envInt, fmtMiB, fmtMs, heading, log, MB, onCleanup, tempDir, type BenchOptions, type BenchReport, type Figure, type Fixtures } from './lib.js';

const GOAL_SERVICE_SHARE = 0.02;
const GOAL_SHARED_SHARE = 0.02;
const GOAL_DISK_RATIO = 1.3;

const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;

function served(proxy: Proxy, p: string): number {
  return proxy.bytes.get(p) ?? 0;
}

/** The download step's output of the last job of `home`, from its event log. */
async function downloadOutput(home: string, hub: string, jobId: string, step: string): Promise<Record<string, unknown>> {
  const ev = await cliOk(['events', jobId], home, hub);
  const events = (ev.result?.events ?? []) as { type: string; payload: { output?: Record<string, unknown> } }[];
  return events.find((e) => e.type === `xstate.done.actor.${step}`)?.payload.output ?? {};
}

export async function benchDelta(o: BenchOptions, _fx: Fixtures): Promise<BenchReport> {
  const serviceMb = envInt('BENCH_DELTA_MB', o.quick ? 48 : 200);
  const sharedMb = envInt('BENCH_SHARED_MB', o.quick ? 24 : 100);
  heading(`Delta updates (${serviceMb} MiB package, code-only change) and shared model files (${sharedMb} MiB)`);
  const work = await tempDir('delta');
  const key = await makeKey(work);
  const hub = await createHub({ storage: path.join(work, 'storage'), host: '127.0.0.1', port: 0, publisherKeys: [await readPublicKeyFile(key.pub)], adminToken: ADMIN_TOKEN });
  onCleanup('close the delta hub', () => hub.close());
  const proxy = await startProxyServer(hub.url);
  onCleanup('stop the delta proxy', () => proxy.close());
  const admin = { url: hub.url, token: ADMIN_TOKEN };
  const figures: Figure[] = [];
  const newHome = async (name: string): Promise<string> => {
    const home = path.join(work, name);
    await cliOk(['trust', 'add', key.pub], home, proxy.url);
    return home;
  };

  // ---- a code-only change of a service ----------------------------------------------------
  log(`  publishing demo-echo 1.0.0 and 1.1.0 (${serviceMb} MiB of stored model weights; 1.1.0 changes app/server.mjs) …`);
  await publishService(work, key, admin, { version: '1.0.0', modelBytes: serviceMb * MB });
  const v2 = await publishService(work, key, admin, { version: '1.1.0', modelBytes: serviceMb * MB, code: 'a code-only change' });
  if (v2.manifest.kind !== 'service') throw new Error('service');
  const size = v2.manifest.archive.size;
  const zip = '/storage/services/demo-echo/1.1.0/linux-x64/service.zip';

  const node = await newHome('node-update');
  await cliOk(['install', 'demo-echo@1.0.0', '--no-start'], node, proxy.url);
  proxy.bytes.clear();
  proxy.log = [];
  const update = await cliOk(['install', 'demo-echo@1.1.0', '--no-start'], node, proxy.url);
  const deltaBytes = served(proxy, zip);
  const requests = proxy.log.filter((l) => l.path === zip).length;
  const out = await downloadOutput(node, proxy.url, String(update.result?.job_id), 'downloadArchive');
  const delta = out.delta as { entriesFetched?: number; filesReused?: number; bytesReused?: number; linked?: number } | undefined;

  const fresh = await newHome('node-fresh');
  proxy.bytes.clear();
  const full = await cliOk(['install', 'demo-echo@1.1.0', '--no-start'], fresh, proxy.url);
  const fullBytes = served(proxy, zip);

  log(`  package ${fmtMiB(size)}; update 1.0.0 → 1.1.0 served ${deltaBytes} bytes in ${requests} ranged requests (${pct(deltaBytes / size)}), ${delta?.entriesFetched ?? '?'} entries fetched, ${delta?.filesReused ?? '?'} files (${fmtMiB(delta?.bytesReused ?? 0)}) reused, ${delta?.linked ?? '?'} hard-linked`);
  log(`  update ${fmtMs(update.ms)}; full install of 1.1.0 on a fresh node ${fmtMs(full.ms)}, served ${fullBytes} bytes (${(fullBytes / size).toFixed(3)}×)`);
  if (out.deltaFallback !== undefined) log(`  NOTE: the update fell back to the whole package: ${JSON.stringify(out.deltaFallback)}`);
  figures.push(
    { name: `code-only update of a ${serviceMb} MiB package: bytes`, value: `${pct(deltaBytes / size)} (${deltaBytes} B)`, verdict: deltaBytes / size <= GOAL_SERVICE_SHARE && out.delta !== undefined ? 'pass' : 'miss', note: `goal ≤ ${pct(GOAL_SERVICE_SHARE)}; full download ${fmtMiB(fullBytes)}` },
    { name: 'code-only update: time (delta / full install)', value: `${fmtMs(update.ms)} / ${fmtMs(full.ms)}`, verdict: 'info' },
  );

  // ---- a model version sharing a file -------------------------------------------------------
  log(`  publishing model bench-nmt 1.0.0 and 1.1.0 (a shared ${sharedMb} MiB file, a 4 MiB file of their own each) …`);
  const shared = { size: sharedMb * MB, seed: 7001 };
  const m1 = await publishModel(work, key, admin, { id: 'bench-nmt', version: '1.0.0', files: { 'weights/shared.bin': shared, 'weights/head.bin': { size: 4 * MB, seed: 7002 } } });
  const m2 = await publishModel(work, key, admin, { id: 'bench-nmt', version: '1.1.0', files: { 'weights/shared.bin': shared, 'weights/head.bin': { size: 4 * MB, seed: 7003 } } });
  const bytesOf = (m: typeof m1): number => m.manifest.files.reduce((n, f) => n + f.size, 0);
  const modelNode = await newHome('node-models');
  await cliOk(['models', 'pull', 'bench-nmt@1.0.0'], modelNode, proxy.url);
  proxy.bytes.clear();
  const second = await cli(['models', 'pull', 'bench-nmt@1.1.0'], modelNode, proxy.url);
  if (second.result?.ok !== true) throw new Error(`pull failed: ${JSON.stringify(second.result)}`);
  const sharedServed = served(proxy, '/storage/models/bench-nmt/1.1.0/weights/shared.bin');
  const totalServed = [...proxy.bytes.entries()].filter(([p]) => p.startsWith('/storage/models/bench-nmt/1.1.0/')).reduce((n, [, b]) => n + b, 0);
  const one = await diskUsage([path.join(modelNode, 'models', 'bench-nmt', '1.0.0')]);
  const both = await diskUsage([path.join(modelNode, 'models', 'bench-nmt'), path.join(modelNode, 'blobs')]);
  log(`  second version: shared file served ${sharedServed} bytes (${pct(sharedServed / shared.size)} of ${fmtMiB(shared.size)}); all its files ${fmtMiB(totalServed)} of ${fmtMiB(bytesOf(m2))}; pull ${fmtMs(second.ms)}`);
  log(`  disk: one version ${fmtMiB(one)}, both versions with the store ${fmtMiB(both)} (${(both / one).toFixed(3)}×); without sharing they would take ${fmtMiB(bytesOf(m1) + bytesOf(m2))}`);
  figures.push(
    { name: `second model version, shared ${sharedMb} MiB file: bytes`, value: `${pct(sharedServed / shared.size)} (${sharedServed} B)`, verdict: sharedServed / shared.size <= GOAL_SHARED_SHARE ? 'pass' : 'miss', note: `goal ≤ ${pct(GOAL_SHARED_SHARE)}` },
    { name: 'two model versions: disk against one', value: `${(both / one).toFixed(3)}×`, verdict: both / one <= GOAL_DISK_RATIO ? 'pass' : 'miss', note: `goal ≤ ${GOAL_DISK_RATIO}×; ${fmtMiB(both)} against ${fmtMiB(one)}` },
  );
  return { title: 'delta', figures };
}
