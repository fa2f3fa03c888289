// Pack a model directory: OUT/<path> for every file beside model.json (streamed copies, modes
// normalised, each written under a temp name, fsynced and renamed) and OUT/manifest.json.
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ModelhubError } from '../errors.js';
import { assertManifestConsistent } from '../schemas/manifest-rules.js';
import { modelManifestSchema, type ModelManifest } from '../schemas/manifest.js';
import { modelJsonSchema } from '../schemas/model.js';
import { parseOrThrow } from '../schemas/parse.js';
import { readDescriptor, resolveCreatedAt, resolveLocations, type PackOptions, type PackResult } from './common.js';
import { fsyncDir, fsyncFile, HashingStream, tempNameFor, unlinkQuiet, writeFileAtomic } from './fsutil.js';
import { dropStaleSignature, MANIFEST_NAME, serialiseManifest, type ManifestFileEntry } from './service.js';
import { collectFiles, type SourceFile } from './walk.js';

export const MODEL_JSON = 'model.json';
/** Fields of model.json that become the manifest's id, version and created_at, not `model`. */
const LIFTED_FIELDS = new Set(['model_id', 'version', 'created_at']);

export async function packModel(srcDir: string, outDir: string, opts: PackOptions = {}): Promise<PackResult> {
  const loc = await resolveLocations(srcDir, outDir, 'model');
  const { raw } = await readDescriptor(path.join(loc.src, MODEL_JSON), MODEL_JSON);
  const model = parseOrThrow(modelJsonSchema, raw, 'MANIFEST_INVALID', MODEL_JSON);

  const files = (await collectFiles(loc.src, { exclude: [loc.out], skipRootNames: ['.git'] })).filter(
    (f) => f.path !== MODEL_JSON,
  );
  if (files.length === 0) {
    throw new ModelhubError('MANIFEST_INVALID', `files: a model needs at least one file beside ${MODEL_JSON}`);
  }

  const info: Record<string, unknown> = { name: model.name, task: model.task, languages: model.languages };
  for (const [k, v] of Object.entries(raw)) {
    if (!LIFTED_FIELDS.has(k) && !(k in info)) info[k] = v;
  }
  const createdAt = resolveCreatedAt(opts.createdAt, model.created_at);
  const buildManifest = (entries: ManifestFileEntry[]) => ({
    schema: 1,
    kind: 'model',
    id: model.model_id,
    version: model.version,
    files: entries,
    model: info,
    created_at: createdAt,
  });
  const check = (m: object): ModelManifest => {
    const parsed = parseOrThrow(modelManifestSchema, m, 'MANIFEST_INVALID', 'manifest');
    assertManifestConsistent(parsed);
    return parsed;
  };
  const placeholder = '0'.repeat(64);
  check(buildManifest(files.map((f) => ({ path: f.path, sha256: placeholder, size: f.size, mode: f.mode }))));

  await mkdir(loc.out, { recursive: true });
  const bytesTotal = files.reduce((n, f) => n + f.size, 0);
  let bytesDone = 0;
  const entries: ManifestFileEntry[] = [];
  const dirs = new Set<string>();
  for (const f of files) {
    const sha256 = await copyFile(f, loc.out, (n) => {
      bytesDone += n;
      opts.onProgress?.({ phase: 'copy', path: f.path, bytesDone, bytesTotal });
    });
    entries.push({ path: f.path, sha256, size: f.size, mode: f.mode });
    dirs.add(path.dirname(path.join(loc.out, ...f.path.split('/'))));
  }
  for (const d of [...dirs].sort()) await fsyncDir(d);

  const manifest = buildManifest(entries);
  const parsed = check(manifest);
  const text = serialiseManifest(manifest);
  const manifestPath = path.join(loc.out, MANIFEST_NAME);
  await dropStaleSignature(manifestPath, text);
  await writeFileAtomic(manifestPath, text);
  await fsyncDir(loc.out);
  return {
    kind: 'model',
    id: model.model_id,
    version: model.version,
    manifestPath,
    manifest: parsed,
    files: entries.length,
    bytes: entries.reduce((n, e) => n + e.size, 0),
  };
}

/** Stream one file to OUT/<path> via a temp name; returns its sha256. */
async function copyFile(f: SourceFile, outRoot: string, onChunk: (n: number) => void): Promise<string> {
  const dest = path.join(outRoot, ...f.path.split('/'));
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = tempNameFor(dest);
  const hasher = new HashingStream(onChunk);
  let digest: string;
  try {
    await pipeline(createReadStream(f.realPath), hasher, createWriteStream(tmp, { flags: 'wx', mode: f.mode }));
    if (hasher.bytes !== f.size || hasher.digest === undefined) {
      throw new ModelhubError('INVALID_REQUEST', `files: "${f.path}" changed while packing (${f.size} bytes expected, ${hasher.bytes} read)`);
    }
    digest = hasher.digest;
    await chmod(tmp, f.mode); // the umask may have cleared bits at creation
    await fsyncFile(tmp);
    await rename(tmp, dest);
  } catch (err) {
    await unlinkQuiet(tmp);
    throw err;
  }
  return digest;
}
