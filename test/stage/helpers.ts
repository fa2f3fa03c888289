// Fixtures for the stager tests: real temp directories, manifests built from file contents, and
// a layout that shows any write outside the staging directory.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { ModelhubError } from '../../src/errors.js';
import type { ServiceManifest } from '../../src/schemas/manifest.js';

const made: string[] = [];

export async function tempDir(prefix = 'modelhub-stage-'): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

export async function cleanupTempDirs(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function baseService(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    service_id: 'stage-demo',
    service_name: 'Stage demo',
    version: '1.0.0',
    platforms: {
      'linux-x64': { exec: { type: 'argv', program: 'runtime/bin/run.sh', args: ['app/main.py'] } },
    },
    default_port: 5008,
    health_check: { type: 'http', endpoint: '/health' },
    x_future: { keep: [1, 2, 3] },
    ...over,
  };
}

export interface FileSpec {
  path: string;
  data: string | Buffer;
  mode?: number;
}

/**
 * A service manifest for these files (only `files` and `service` matter to the stager). The
 * service.json file's content is the JSON of `service` unless the files give their own.
 */
export function manifestFor(files: readonly FileSpec[], service: Record<string, unknown> = baseService()): ServiceManifest {
  return {
    schema: 1,
    kind: 'service',
    id: String(service.service_id),
    version: String(service.version),
    platform: 'linux-x64',
    archive: { path: 'service.zip', sha256: '0'.repeat(64), size: 0 },
    files: files.map((f) => ({
      path: f.path,
      sha256: sha256(f.data),
      size: Buffer.byteLength(f.data),
      ...(f.mode === undefined ? {} : { mode: f.mode }),
    })),
    service,
    created_at: '2025-12-17T00:00:00Z',
  } as unknown as ServiceManifest;
}

export function serviceJsonText(service: Record<string, unknown> = baseService()): string {
  return `${JSON.stringify(service, null, 2)}\n`;
}

/** The standard small package: service.json, a script, an exec script, an empty file. */
export function standardFiles(service: Record<string, unknown> = baseService()): FileSpec[] {
  return [
    { path: 'service.json', data: serviceJsonText(service), mode: 0o644 },
    { path: 'app/main.py', data: 'print("hello")\n'.repeat(100), mode: 0o644 },
    { path: 'runtime/bin/run.sh', data: '#!/bin/sh\nexec python3 "$@"\n', mode: 0o755 },
    { path: 'health/empty.txt', data: '', mode: 0o644 },
  ];
}

/**
 * base/
 *   archive.zip        (the archive lives outside `outer`)
 *   outer/             must end up empty except for `inner/`, itself empty
 *     inner/
 *       staging/       the staging directory (nested so "../../x" would land in outer/)
 */
export interface Layout {
  base: string;
  outer: string;
  inner: string;
  staging: string;
  archive: string;
}

export async function layout(): Promise<Layout> {
  const base = await tempDir();
  const outer = path.join(base, 'outer');
  const inner = path.join(outer, 'inner');
  await mkdir(inner, { recursive: true });
  return { base, outer, inner, staging: path.join(inner, 'staging'), archive: path.join(base, 'archive.zip') };
}

/** Every path under `root`, relative, directories with a trailing "/". */
export async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) {
        out.push(`${r}/`);
        await walk(r);
      } else out.push(r);
    }
  }
  await walk('');
  return out.sort();
}

/** The base directory holds only the archive and outer/inner/, and staging is gone. */
export async function expectNothingLeaked(l: Layout): Promise<void> {
  expect(await tree(l.base)).toEqual(['archive.zip', 'outer/', 'outer/inner/']);
}

export async function rejection(p: Promise<unknown>): Promise<ModelhubError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ModelhubError);
    return err as ModelhubError;
  }
  throw new Error('expected a rejection');
}
