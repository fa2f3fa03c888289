// Removing a model's versions (the uninstall job, for a model): each version folder goes in one
// rename (removeDirAtomically), then the blobs those versions used are freed unless another
// version still uses them (src/store/blobs.ts). Idempotent, so recovery redoes it: after a crash
// the folders are gone but the registry still lists the versions (the event that removes them
// is appended when this step is done), which is where the hashes to free come from.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import type { RemoveOutput } from '../../../machines/uninstall.js';
import { modelManifestSchema } from '../../schemas/manifest.js';
import { BlobStore } from '../../store/blobs.js';
import { removeDirAtomically } from '../fs-util.js';
import type { Registry } from '../registry.js';
import { readProof } from '../version-proof.js';
import type { EngineContext } from './context.js';

/** The file hashes a model manifest lists; none when it cannot be read. */
function hashesOf(manifestText: string | undefined): string[] {
  if (manifestText === undefined) return [];
  try {
    const r = modelManifestSchema.safeParse(JSON.parse(manifestText));
    return r.success ? r.data.files.map((f) => f.sha256) : [];
  } catch {
    return [];
  }
}

/** Every hash listed by an installed model version, but those `except` names. */
export function modelBlobRefs(registry: Registry, except: (id: string, version: string) => boolean = () => false): Set<string> {
  const refs = new Set<string>();
  for (const m of registry.models()) {
    for (const v of m.versions) {
      if (except(m.id, v)) continue;
      for (const h of hashesOf(registry.modelManifest(m.id, v))) refs.add(h);
    }
  }
  return refs;
}

export async function removeModelVersions(ctx: EngineContext, id: string, version: string | null): Promise<RemoveOutput> {
  const root = path.join(ctx.home.models, id);
  const installed = ctx.registry.models().find((m) => m.id === id)?.versions ?? [];
  const onDisk = (await readdir(root).catch(() => [] as string[])).filter((n) => semver.valid(n) === n);
  const versions = version === null ? [...new Set([...installed, ...onDisk])] : [version];
  // What the removed versions used: their signed manifests (registry, else the version's proof).
  const candidates = new Set<string>();
  for (const v of versions) {
    for (const h of hashesOf(ctx.registry.modelManifest(id, v))) candidates.add(h);
    const proof = await readProof(ctx.home.modelDir(id, v)).catch(() => null);
    for (const h of hashesOf(proof?.manifestText)) candidates.add(h);
  }
  for (const v of versions) await removeDirAtomically(ctx.home.modelDir(id, v));
  // The whole model: partial pulls and leftovers too (no pull of it runs: it holds the same lease).
  if (version === null) await rm(root, { recursive: true, force: true });
  const referenced = modelBlobRefs(ctx.registry, (m, v) => m === id && versions.includes(v));
  const freed = await new BlobStore(ctx.home.blobs).free({ referenced, only: candidates, now: ctx.now(), graceMs: 0 });
  return { removed: versions.sort(semver.compare), current: null, blobsFreed: { count: freed.length, bytes: freed.reduce((n, f) => n + f.bytes, 0) } };
}
