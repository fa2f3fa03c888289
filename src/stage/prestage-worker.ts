// Worker thread for the prestager: the extraction (read, hash, write) runs beside the
// download, which hashes on the main thread, instead of taking turns with it.
import { parentPort, workerData } from 'node:worker_threads';
import type { ServiceManifest } from '../schemas/manifest.js';
import { PrestageExtractor } from './prestage-core.js';

export type ToWorker = { type: 'flushed'; n: number } | { type: 'abandon'; reason: string } | { type: 'finish'; size: number };
export type FromWorker = { type: 'done'; ok: boolean };

const o = workerData as { dest: string; manifest: ServiceManifest; stagingDir: string };
const ex = new PrestageExtractor(o);
parentPort?.on('message', (m: ToWorker) => {
  if (m.type === 'flushed') ex.flushedTo(m.n);
  else if (m.type === 'abandon') ex.abandon(m.reason);
  else void ex.finish(m.size);
});
void ex.settle().then((ok) => {
  const msg: FromWorker = { type: 'done', ok };
  parentPort?.postMessage(msg);
});
