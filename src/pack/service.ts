// Pack a service directory into OUT/service.zip + OUT/manifest.json (SPEC §2, §3, §5 `pack`).
//
// The zip is reproducible: entries sorted by the UTF-8 bytes of their path, one fixed DOS
// timestamp (1980-01-01 00:00:00, no extended-timestamp extra field, so neither the files'
// mtimes nor the packer's time zone show), modes normalised to 0755/0644 with the regular-file
// bit, no directory entries, deflate level 6 or STORE chosen per file from name and content.
// Every file is streamed once: read → sha256/size → (deflate) → zip → sha256/size → disk.
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';
import { ModelhubError, toModelhubError } from '../errors.js';
import { PLATFORMS, type Platform } from '../schemas/common.js';
import { execProgramProblem } from '../schemas/safe-path.js';
import { assertManifestConsistent } from '../schemas/manifest-rules.js';
import { serviceManifestSchema, type ServiceManifest } from '../schemas/manifest.js';
import { parseOrThrow } from '../schemas/parse.js';
import { serviceJsonSchema } from '../schemas/service.js';
import { readDescriptor, resolveCreatedAt, resolveLocations, type PackOptions, type PackResult } from './common.js';
import { chooseCompression, DEFLATE_LEVEL, type Compression } from './compress.js';
import { fsyncDir, fsyncFile, HashingStream, isEnoent, tempNameFor, unlinkQuiet, writeFileAtomic } from './fsutil.js';
import { collectFiles, type SourceFile } from './walk.js';

export const SERVICE_JSON = 'service.json';
export const ARCHIVE_NAME = 'service.zip';
export const MANIFEST_NAME = 'manifest.json';
export const SIGNATURE_NAME = 'manifest.json.minisig';

/**
 * The one timestamp of every entry. Built from local-time parts because yazl encodes DOS time
 * from local-time parts: the encoded value is 1980-01-01 00:00:00 in every time zone.
 */
export function zipEntryTime(): Date {
  return new Date(1980, 0, 1, 0, 0, 0);
}

const S_IFREG = 0o100000;

export interface ManifestFileEntry {
  path: string;
  sha256: string;
  size: number;
  mode: number;
}

export function serialiseManifest(m: object): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

export async function packService(srcDir: string, outDir: string, opts: PackOptions = {}): Promise<PackResult> {
  if (opts.platform === undefined || opts.platform === '') {
    throw new ModelhubError('INVALID_REQUEST', '--platform is required for a service');
  }
  if (!(PLATFORMS as readonly string[]).includes(opts.platform)) {
    throw new ModelhubError('INVALID_REQUEST', `--platform: "${opts.platform}" is not one of ${PLATFORMS.join(', ')}`);
  }
  const platform = opts.platform as Platform;
  const loc = await resolveLocations(srcDir, outDir, 'service');

  // 1. The descriptor.
  const { raw } = await readDescriptor(path.join(loc.src, SERVICE_JSON), SERVICE_JSON);
  const service = parseOrThrow(serviceJsonSchema, raw, 'MANIFEST_INVALID', SERVICE_JSON);
  const entry = service.platforms[platform];
  if (entry === undefined) {
    const have = Object.keys(service.platforms);
    throw new ModelhubError(
      'MANIFEST_INVALID',
      `${SERVICE_JSON}: platforms.${platform}: no entry for the requested platform (has: ${have.length > 0 ? have.join(', ') : 'none'})`,
      { details: { field: `platforms.${platform}` } },
    );
  }

  // 2. The files.
  const files = await collectFiles(loc.src, { exclude: [loc.out], skipRootNames: ['.git'] });
  const paths = new Set(files.map((f) => f.path));
  if (!paths.has(SERVICE_JSON)) {
    throw new ModelhubError('MANIFEST_INVALID', `files: ${SERVICE_JSON} must be a regular file in the package root`);
  }
  // The same rule the hub and the node apply (src/schemas/safe-path.ts), named for the source.
  const problem = execProgramProblem(entry.exec.program, paths);
  if (problem !== undefined) {
    throw new ModelhubError('MANIFEST_INVALID', `${SERVICE_JSON}: platforms.${platform}.exec.program: ${problem}`, {
      details: { field: `platforms.${platform}.exec.program`, program: entry.exec.program },
    });
  }

  const createdAt = resolveCreatedAt(opts.createdAt, service.created_at);
  const buildManifest = (archive: { sha256: string; size: number }, entries: ManifestFileEntry[]) => ({
    schema: 1,
    kind: 'service',
    id: service.service_id,
    version: service.version,
    platform,
    archive: { path: ARCHIVE_NAME, sha256: archive.sha256, size: archive.size },
    files: entries,
    service: raw,
    created_at: createdAt,
  });
  const check = (m: object): ServiceManifest => {
    const parsed = parseOrThrow(serviceManifestSchema, m, 'MANIFEST_INVALID', 'manifest');
    assertManifestConsistent(parsed);
    return parsed;
  };
  // Everything but the hashes can be checked before spending time on the archive.
  const placeholder = '0'.repeat(64);
  check(buildManifest({ sha256: placeholder, size: 0 }, files.map((f) => ({ path: f.path, sha256: placeholder, size: f.size, mode: f.mode }))));

  // 3. The archive, under a temp name.
  await mkdir(loc.out, { recursive: true });
  const archivePath = path.join(loc.out, ARCHIVE_NAME);
  const tmp = tempNameFor(archivePath);
  let archive: { sha256: string; size: number };
  let entries: ManifestFileEntry[];
  try {
    ({ archive, entries } = await writeArchive(files, tmp, opts));
    const manifest = buildManifest(archive, entries);
    const parsed = check(manifest);
    const text = serialiseManifest(manifest);

    // 4. Commit: a signature of a different manifest is stale now.
    const manifestPath = path.join(loc.out, MANIFEST_NAME);
    await dropStaleSignature(manifestPath, text);
    await rename(tmp, archivePath);
    await writeFileAtomic(manifestPath, text);
    await fsyncDir(loc.out);
    return {
      kind: 'service',
      id: service.service_id,
      version: service.version,
      platform,
      manifestPath,
      manifest: parsed,
      archivePath,
      files: entries.length,
      bytes: entries.reduce((n, e) => n + e.size, 0),
    };
  } catch (err) {
    await unlinkQuiet(tmp);
    throw err;
  }
}

/** Remove OUT/manifest.json.minisig when OUT/manifest.json is about to change. */
export async function dropStaleSignature(manifestPath: string, newText: string): Promise<void> {
  let old: string | undefined;
  try {
    old = await readFile(manifestPath, 'utf8');
  } catch (err) {
    if (!isEnoent(err)) throw err;
  }
  if (old !== newText) await unlinkQuiet(path.join(path.dirname(manifestPath), SIGNATURE_NAME));
}

async function writeArchive(
  files: readonly SourceFile[],
  tmp: string,
  opts: PackOptions,
): Promise<{ archive: { sha256: string; size: number }; entries: ManifestFileEntry[] }> {
  const ac = new AbortController();
  let failure: unknown;
  const fail = (err: unknown): void => {
    if (failure === undefined) {
      failure = err;
      ac.abort(err);
    }
  };

  // Decide every entry's compression before the zip starts pulling data.
  const compressions: Compression[] = [];
  for (const f of files) compressions.push(await chooseCompression(f.path, f.realPath, f.size));

  const bytesTotal = files.reduce((n, f) => n + f.size, 0);
  let bytesDone = 0;
  const zip = new yazl.ZipFile();
  zip.on('error', fail);
  const hashers: HashingStream[] = [];
  const opened = new Set<ReadStream>();
  const mtime = zipEntryTime();
  files.forEach((f, i) => {
    const deflate = compressions[i] === 'deflate';
    const hasher = new HashingStream((n) => {
      bytesDone += n;
      opts.onProgress?.({ phase: 'zip', path: f.path, bytesDone, bytesTotal });
    });
    hashers.push(hasher);
    zip.addReadStreamLazy(
      f.path,
      {
        mtime,
        forceDosTimestamp: true,
        mode: S_IFREG | f.mode,
        compress: deflate,
        ...(deflate ? { compressionLevel: DEFLATE_LEVEL } : {}),
        size: f.size,
      },
      (cb) => {
        // Opened only when yazl reaches this entry: one open file at a time.
        const rs = createReadStream(f.realPath);
        opened.add(rs);
        rs.on('close', () => opened.delete(rs));
        rs.on('error', (err) => fail(toModelhubError(err)));
        hasher.on('error', fail);
        hasher.on('end', () => {
          if (hasher.bytes !== f.size) {
            fail(new ModelhubError('INVALID_REQUEST', `files: "${f.path}" changed while packing (${f.size} bytes expected, ${hasher.bytes} read)`));
          }
        });
        cb(null, rs.pipe(hasher));
      },
    );
  });
  zip.end({ forceZip64Format: false, comment: '' });

  const archiveHasher = new HashingStream();
  try {
    await pipeline(zip.outputStream as Readable, archiveHasher, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }), {
      signal: ac.signal,
    });
  } catch (err) {
    for (const rs of opened) rs.destroy();
    throw toModelhubError(failure ?? err);
  }
  if (failure !== undefined) throw toModelhubError(failure);
  await fsyncFile(tmp);
  const onDisk = (await stat(tmp)).size;
  if (onDisk !== archiveHasher.bytes || archiveHasher.digest === undefined) {
    throw new ModelhubError('INTERNAL', `${ARCHIVE_NAME}: ${onDisk} bytes on disk, ${archiveHasher.bytes} written`);
  }

  const entries = files.map((f, i): ManifestFileEntry => {
    const digest = hashers[i]?.digest;
    if (digest === undefined) throw new ModelhubError('INTERNAL', `files: "${f.path}" was not hashed`);
    return { path: f.path, sha256: digest, size: f.size, mode: f.mode };
  });
  return { archive: { sha256: archiveHasher.digest, size: archiveHasher.bytes }, entries };
}
