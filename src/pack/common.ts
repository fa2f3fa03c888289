// What service and model packing share: options, result type, created_at, reading the
// descriptor JSON, and checking where the output goes.
import { readFile } from 'node:fs/promises';
import { ModelhubError } from '../errors.js';
import type { Manifest } from '../schemas/manifest.js';
import { isEnoent, isWithin, realpathLoose } from './fsutil.js';

export interface PackProgress {
  phase: 'zip' | 'copy';
  /** The file being read, relative to the package root. */
  path: string;
  /** Bytes of file content read so far, over all files. */
  bytesDone: number;
  bytesTotal: number;
}

export interface PackOptions {
  /** Required for a service: the platform this package is for. */
  platform?: string;
  /** ISO 8601 date for the manifest's created_at (overrides the descriptor and SOURCE_DATE_EPOCH). */
  createdAt?: string;
  /** Called as file content is read (per chunk; throttle in the caller). */
  onProgress?: (p: PackProgress) => void;
}

export type PackResult = {
  kind: 'service' | 'model';
  id: string;
  version: string;
  platform?: string;
  /** Absolute path of the manifest.json written. */
  manifestPath: string;
  /** The manifest as validated (schema defaults applied; the file holds the descriptor verbatim). */
  manifest: Manifest;
  /** Absolute path of service.zip (services only). */
  archivePath?: string;
  /** Number of files in the release. */
  files: number;
  /** Total size of those files, uncompressed. */
  bytes: number;
};

export function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * created_at: explicit option, else the descriptor's own created_at, else SOURCE_DATE_EPOCH
 * (reproducible builds), else now.
 */
export function resolveCreatedAt(explicit: string | undefined, fromDescriptor: string | undefined): string {
  if (explicit !== undefined) {
    if (Number.isNaN(Date.parse(explicit))) {
      throw new ModelhubError('INVALID_REQUEST', `createdAt: "${explicit}" must be an ISO 8601 date`);
    }
    return explicit;
  }
  if (fromDescriptor !== undefined) return fromDescriptor;
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined && epoch !== '') {
    if (!/^\d{1,12}$/.test(epoch)) {
      throw new ModelhubError('INVALID_REQUEST', `SOURCE_DATE_EPOCH: "${epoch}" must be a whole number of seconds`);
    }
    return isoSeconds(new Date(Number(epoch) * 1000));
  }
  return isoSeconds(new Date());
}

/** Read and JSON-parse a descriptor; MANIFEST_INVALID when it is not a JSON object. */
export async function readDescriptor(file: string, name: string): Promise<{ raw: Record<string, unknown>; text: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isEnoent(err)) throw new ModelhubError('INVALID_REQUEST', `${name}: not found in the source directory`, { cause: err });
    throw err;
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelhubError('MANIFEST_INVALID', `${name}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelhubError('MANIFEST_INVALID', `${name}: (root): must be a JSON object`);
  }
  return { raw: value as Record<string, unknown>, text };
}

export interface Locations {
  /** Real path of the source directory. */
  src: string;
  /** Resolved path of the output directory (it may not exist yet). */
  out: string;
}

export async function resolveLocations(srcDir: string, outDir: string, kind: 'service' | 'model'): Promise<Locations> {
  const src = await realpathLoose(srcDir);
  const out = await realpathLoose(outDir);
  if (out === src) {
    throw new ModelhubError('INVALID_REQUEST', `--out: must not be the source directory itself (${src})`);
  }
  if (kind === 'model' && isWithin(out, src)) {
    // Model files are copied to OUT/<path>; with the source inside OUT a copy could land on a
    // source file.
    throw new ModelhubError('INVALID_REQUEST', `--out: must not contain the model's source directory (${src})`);
  }
  return { src, out };
}
