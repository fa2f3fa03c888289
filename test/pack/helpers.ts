// Fixtures and readers shared by the packer tests: real directories under os.tmpdir().
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { ModelhubError } from '../../src/errors.js';

const made: string[] = [];

export async function tempDir(prefix = 'modelhub-pack-'): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

export async function cleanupTempDirs(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export async function put(root: string, rel: string, content: string | Buffer, mode = 0o644): Promise<string> {
  const p = path.join(root, ...rel.split('/'));
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, content);
  await chmod(p, mode);
  return p;
}

export function baseServiceJson(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    service_id: 'nmt-demo',
    service_name: 'Demo NMT',
    version: '1.2.0',
    description: 'test fixture',
    models: [{ model_id: 'w', model_type: 'nmt', version: '1.0.0', path: 'models' }],
    platforms: {
      'linux-x64': {
        exec: { type: 'argv', program: 'runtime/bin/run.sh', args: ['app/main.py'] },
        env: { OMP_NUM_THREADS: '2' },
      },
    },
    default_port: 5008,
    health_check: { type: 'http', endpoint: '/health' },
    x_future_field: { nested: [1, 2, 3], flag: true },
    created_at: '2025-12-17T00:00:00Z',
    ...over,
  };
}

/** A service source dir: a script, compressible text, 1 MiB random weights, random .dat, an empty file. */
export async function makeService(over: Record<string, unknown> = {}): Promise<string> {
  const root = await tempDir('modelhub-svc-');
  await put(root, 'service.json', JSON.stringify(baseServiceJson(over), null, 2));
  await put(root, 'runtime/bin/run.sh', '#!/bin/sh\nexec python3 "$@"\n', 0o755);
  await put(root, 'app/main.py', 'print("hello from the service")\n'.repeat(2000));
  await put(root, 'app/__init__.py', '');
  await put(root, 'models/w.bin', randomBytes(1024 * 1024));
  await put(root, 'data/random.dat', randomBytes(128 * 1024));
  await put(root, 'health/check.txt', 'ok\n');
  return root;
}

export async function makeModel(over: Record<string, unknown> = {}): Promise<string> {
  const root = await tempDir('modelhub-model-');
  await put(
    root,
    'model.json',
    JSON.stringify({
      model_id: 'm2m100-en-zh',
      version: '1.0.0',
      name: 'M2M100 en→zh',
      task: 'translation',
      languages: ['en', 'zh'],
      license: 'MIT',
      created_at: '2025-12-17T00:00:00Z',
      ...over,
    }),
  );
  await put(root, 'weights/model.safetensors', randomBytes(256 * 1024));
  await put(root, 'tokenizer.json', JSON.stringify({ vocab: ['a', 'b', 'c'] }));
  await put(root, 'tools/convert.sh', '#!/bin/sh\necho hi\n', 0o775);
  return root;
}

export async function sha256File(p: string): Promise<string> {
  return createHash('sha256').update(await readFile(p)).digest('hex');
}

export interface ZipEntryInfo {
  name: string;
  compressionMethod: number;
  unixMode: number;
  lastModFileDate: number;
  lastModFileTime: number;
  uncompressedSize: number;
  content: Buffer;
}

export async function readZip(file: string): Promise<ZipEntryInfo[]> {
  const zip = await yauzl.openPromise(file, { lazyEntries: true });
  const out: ZipEntryInfo[] = [];
  try {
    for await (const e of zip.eachEntry()) {
      const stream: Readable = await zip.openReadStreamPromise(e);
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      out.push({
        name: e.fileName,
        compressionMethod: e.compressionMethod,
        unixMode: e.externalFileAttributes >>> 16,
        lastModFileDate: e.lastModFileDate,
        lastModFileTime: e.lastModFileTime,
        uncompressedSize: e.uncompressedSize,
        content: Buffer.concat(chunks),
      });
    }
  } finally {
    zip.close();
  }
  return out;
}

/** Run `fn`, expect a ModelhubError, and return it. */
export async function rejection(fn: () => Promise<unknown>): Promise<ModelhubError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ModelhubError) return err;
    throw new Error(`expected a ModelhubError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected a rejection, but it resolved');
}
