// Helpers for delta-update and blob-store tests and benches: releases that differ in chosen
// files, a folder's files with their modes and hashes (to compare a delta install with a full
// one), the disk a set of folders takes (hard links counted once, like `du`), and where an
// entry's data lies in a package (to tamper with exactly its bytes).
import { createHash } from 'node:crypto';
import { appendFile, lstat, mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { publishDir } from '../../src/admin/publish-client.js';
import { pseudoRandomBytes, writeDemoModel, writeDemoService } from '../../src/demo/fixtures.js';
import { assignRegions, parseCentralDirectory, parseTail, parseZip64End, ZIP64_LOCATOR_SIZE, type EndRecord } from '../../src/delta/zip-format.js';
import { pack } from '../../src/pack/index.js';
import type { Manifest } from '../../src/schemas/manifest.js';
import { signManifest, type BuiltRelease, type TestKey } from './releases.js';

export interface ServiceSpec {
  id?: string;
  version: string;
  /** Bytes of the demo's models/tiny.bin (the same bytes for the same size). */
  modelBytes?: number;
  /** Appended to app/server.mjs as a comment: a code change. */
  code?: string;
  /** Extra files: size → pseudo-random bytes from `seed`, or the given content. */
  files?: Record<string, { size: number; seed: number } | string>;
}

/** Builds (pack + sign) a service release from the demo service with the given differences, and publishes it. */
export async function publishService(work: string, key: TestKey, hub: { url: string; token: string }, spec: ServiceSpec): Promise<BuiltRelease> {
  const tag = `${spec.id ?? 'demo-echo'}-${spec.version}-${Math.random().toString(36).slice(2, 8)}`;
  const src = path.join(work, 'src', tag);
  await writeDemoService(src, { ...(spec.id === undefined ? {} : { id: spec.id }), version: spec.version, ...(spec.modelBytes === undefined ? {} : { modelBytes: spec.modelBytes }) });
  if (spec.code !== undefined) await appendFile(path.join(src, 'app', 'server.mjs'), `\n// ${spec.code}\n`);
  for (const [rel, content] of Object.entries(spec.files ?? {})) {
    const file = path.join(src, ...rel.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, typeof content === 'string' ? content : pseudoRandomBytes(content.size, content.seed));
  }
  const out = path.join(work, 'out', tag);
  await pack(src, out, { platform: 'linux-x64' });
  await signManifest(out, key);
  await publishDir(out, { hub: hub.url, token: hub.token });
  const manifestText = await readFile(path.join(out, 'manifest.json'), 'utf8');
  return { dir: out, manifestText, manifest: JSON.parse(manifestText) as Manifest };
}

/** Builds and publishes a model release with the given files (size → pseudo-random bytes from seed). */
export async function publishModel(work: string, key: TestKey, hub: { url: string; token: string }, o: { id: string; version: string; files: Record<string, { size: number; seed: number }> }): Promise<BuiltRelease> {
  const tag = `${o.id}-${o.version}-${Math.random().toString(36).slice(2, 8)}`;
  const src = path.join(work, 'src', tag);
  await writeDemoModel(src, { id: o.id, version: o.version, files: {} });
  for (const [rel, f] of Object.entries(o.files)) {
    const file = path.join(src, ...rel.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, pseudoRandomBytes(f.size, f.seed));
  }
  const out = path.join(work, 'out', tag);
  await pack(src, out);
  await signManifest(out, key);
  await publishDir(out, { hub: hub.url, token: hub.token });
  const manifestText = await readFile(path.join(out, 'manifest.json'), 'utf8');
  return { dir: out, manifestText, manifest: JSON.parse(manifestText) as Manifest };
}

export interface TreeEntry {
  mode: number;
  size: number;
  sha256: string | null;
}

/** Every file and folder below `dir`: mode bits, size and (files) SHA-256, by relative path. */
export async function treeOf(dir: string): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(dir, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(path.join(dir, r));
      if (st.isDirectory()) {
        out[`${r}/`] = { mode: st.mode & 0o7777, size: 0, sha256: null };
        await walk(r);
      } else {
        out[r] = { mode: st.mode & 0o7777, size: st.size, sha256: createHash('sha256').update(await readFile(path.join(dir, r))).digest('hex') };
      }
    }
  };
  await walk('');
  return out;
}

/** Bytes of disk that the files below `dirs` take, each inode counted once (`du` semantics). */
export async function diskUsage(dirs: string[]): Promise<number> {
  const seen = new Set<string>();
  let bytes = 0;
  const walk = async (p: string): Promise<void> => {
    const st = await lstat(p).catch(() => null);
    if (st === null) return;
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    bytes += st.blocks * 512;
    if (st.isDirectory()) for (const name of await readdir(p)) await walk(path.join(p, name));
  };
  for (const d of dirs) await walk(d);
  return bytes;
}

/** Where `name`'s stored (compressed) data lies in the zip file `zipPath`: [start, end). */
export async function entryDataSpan(zipPath: string, name: string): Promise<{ start: number; end: number }> {
  const size = (await stat(zipPath)).size;
  const fh = await open(zipPath, 'r');
  try {
    const read = async (start: number, end: number): Promise<Buffer> => {
      const buf = Buffer.alloc(end - start);
      await fh.read(buf, 0, buf.length, start);
      return buf;
    };
    const tail = await read(Math.max(0, size - 70_000), size);
    const found = parseTail(tail, size);
    if (found === null) throw new Error('no end record');
    const end: EndRecord = 'zip64EocdOffset' in found ? parseZip64End(await read(found.zip64EocdOffset, found.eocdOffset - ZIP64_LOCATOR_SIZE), found) : found;
    const entries = parseCentralDirectory(await read(end.cdOffset, end.cdOffset + end.cdSize), end);
    assignRegions(entries, end.cdOffset);
    const e = entries.find((x) => x.name === name);
    if (e === undefined) throw new Error(`no entry ${name}`);
    const header = await read(e.localHeaderOffset, e.localHeaderOffset + 30);
    const start = e.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    return { start, end: start + e.compressedSize };
  } finally {
    await fh.close();
  }
}
