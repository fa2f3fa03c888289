// The rebuild machine's effects (machines/rebuild.ts): scan the version folders, judge each one
// by the proof it keeps, quarantine what fails, restore the pointers. Each is idempotent: a
// restored job redoes the step it was in, and finds the disk as the interrupted attempt left it.
import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import type { PointerOutcome, RestorePointersInput, RestorePointersOutput, ScanOutput, VerifyVersionInput, VersionRef, VersionVerdict } from '../../../machines/rebuild.js';
import { toModelhubError } from '../../errors.js';
import { guardedEffect } from '../effect.js';
import { exists, fsyncDir } from '../fs-util.js';
import type { Home } from '../home.js';
import type { JobHandle } from '../runner.js';
import { pausePoint } from '../test-hooks.js';
import { checkVersionFiles, isIntact } from '../version-check.js';
import { readProof, verifyProof, writeProof, type VersionProof } from '../version-proof.js';
import type { EngineContext } from './context.js';

/** Names of version folders: SemVer, exactly (staging, trash and pointer names are not). */
function isVersionName(name: string): boolean {
  return semver.valid(name) === name;
}

async function versionDirsOf(parent: string): Promise<{ id: string; version: string }[]> {
  const out: { id: string; version: string }[] = [];
  for (const id of (await readdir(parent).catch(() => [] as string[])).sort()) {
    if (id.startsWith('.')) continue;
    const names = await readdir(path.join(parent, id)).catch(() => [] as string[]);
    for (const version of names.filter(isVersionName).sort(semver.compare)) {
      // A real folder only: a symbolic link named like a version is not something we installed.
      const s = await lstat(path.join(parent, id, version)).catch(() => null);
      if (s?.isDirectory() === true) out.push({ id, version });
    }
  }
  return out;
}

/** Whether a home holds any version folder (a lost engine.db then has something to rebuild). */
export async function hasVersionFolders(home: Home): Promise<boolean> {
  return (await versionDirsOf(home.services)).length > 0 || (await versionDirsOf(home.models)).length > 0;
}

export function versionDirOf(home: Home, v: VersionRef): string {
  return v.kind === 'service' ? home.versionDir(v.id, v.version) : home.modelDir(v.id, v.version);
}

/** Where a rebuild job puts a version folder that failed: per job, so a redo finds it again. */
export function quarantineDirOf(home: Home, jobId: string, v: VersionRef): string {
  return path.join(home.quarantine, jobId, v.kind === 'service' ? 'services' : 'models', v.id, v.version);
}

/** Moves a folder aside (one rename within the home), durably. */
async function quarantine(from: string, to: string): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  await rename(from, to);
  await fsyncDir(path.dirname(from));
  await fsyncDir(path.dirname(to));
}

function describeDamage(modified: string[], missing: string[]): string {
  const parts = [];
  if (modified.length > 0) parts.push(`${modified.length} modified (${modified.slice(0, 3).join(', ')}${modified.length > 3 ? ', …' : ''})`);
  if (missing.length > 0) parts.push(`${missing.length} missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''})`);
  return `files differ from the signed manifest: ${parts.join('; ')}`;
}

/** The hub's signed manifest for a version without proof; null when there is no hub or it cannot say. */
async function proofFromHub(ctx: EngineContext, v: VersionRef, platform: string): Promise<VersionProof | null> {
  let hub;
  try {
    hub = ctx.requireHub();
  } catch {
    return null;
  }
  // Rebuild runs before anything else a command does: a hub that does not answer soon is skipped.
  const signal = AbortSignal.timeout(10_000);
  try {
    return v.kind === 'service' ? await hub.serviceManifest(v.id, v.version, platform, signal) : await hub.modelManifest(v.id, v.version, signal);
  } catch {
    return null;
  }
}

export function rebuildEffects(ctx: EngineContext, job: JobHandle & { jobId: string }, o: { platform: string }) {
  const effect = guardedEffect(job);
  const { home } = ctx;
  let verified = 0;

  /** Judges one folder in place: intact, or why not (null problem: no proof to judge by). */
  async function judge(dir: string, v: VersionRef): Promise<{ verdict: Omit<VersionVerdict, 'quarantinedTo'>; proofToWrite: VersionProof | null }> {
    const base = { ...v, manifestText: null, keyId: null, modified: [], missing: [] };
    const keys = await ctx.trust.keys();
    let proof = await readProof(dir);
    let proofToWrite: VersionProof | null = null;
    if (proof === null) {
      // A version from before proofs: the hub still serves its signed manifest.
      proof = await proofFromHub(ctx, v, o.platform);
      if (proof === null) return { verdict: { ...base, status: 'unproven', problem: 'no signed manifest in .modelhub/, and the hub could not supply one' }, proofToWrite: null };
      proofToWrite = proof;
    }
    // Nothing can be proven without a trusted key: that is the node's state, not the folder's fault.
    if (keys.length === 0) return { verdict: { ...base, status: 'unproven', problem: 'the trust store is empty' }, proofToWrite: null };
    let proven;
    try {
      proven = verifyProof(proof, v, keys);
    } catch (err) {
      const e = toModelhubError(err);
      return { verdict: { ...base, status: 'quarantined', problem: `${e.code}: ${e.message}` }, proofToWrite: null };
    }
    const files = await checkVersionFiles(dir, proven.manifest.files, job.signal);
    if (!isIntact(files)) {
      return { verdict: { ...base, status: 'quarantined', problem: describeDamage(files.modified, files.missing), modified: files.modified, missing: files.missing }, proofToWrite: null };
    }
    return { verdict: { ...base, status: 'intact', manifestText: proof.manifestText, keyId: proven.keyId, problem: null }, proofToWrite };
  }

  return {
    scanVersions: effect<{ jobId: string }, ScanOutput>(async () => {
      const services = (await versionDirsOf(home.services)).map((s): VersionRef => ({ kind: 'service', ...s }));
      const models = (await versionDirsOf(home.models)).map((m): VersionRef => ({ kind: 'model', ...m }));
      // Folders an interrupted attempt of this job already quarantined are judged again there.
      const moved = [...(await versionDirsOf(path.join(home.quarantine, job.jobId, 'services'))).map((s): VersionRef => ({ kind: 'service', ...s })), ...(await versionDirsOf(path.join(home.quarantine, job.jobId, 'models'))).map((m): VersionRef => ({ kind: 'model', ...m }))];
      const key = (v: VersionRef): string => `${v.kind}/${v.id}/${v.version}`;
      const all = new Map([...services, ...models, ...moved].map((v) => [key(v), v]));
      return { candidates: [...all.values()] };
    }),

    verifyVersion: effect<VerifyVersionInput, VersionVerdict>(async ({ kind, id, version }) => {
      const v: VersionRef = { kind, id, version };
      verified += 1;
      await pausePoint(`rebuild:verify:${verified}`);
      const dir = versionDirOf(home, v);
      const parked = quarantineDirOf(home, job.jobId, v);
      if (!(await exists(dir))) {
        // Moved by an interrupted attempt of this job: judged again where it is, for the report.
        if (await exists(parked)) return { ...(await judge(parked, v)).verdict, status: 'quarantined', quarantinedTo: parked };
        return { ...v, status: 'quarantined', manifestText: null, keyId: null, problem: 'the folder disappeared during the rebuild', modified: [], missing: [], quarantinedTo: null };
      }
      const { verdict, proofToWrite } = await judge(dir, v);
      if (verdict.status === 'quarantined') {
        await quarantine(dir, parked);
        ctx.warn(`${kind} ${id} ${version}: ${verdict.problem ?? ''}; moved to ${parked}`);
        return { ...verdict, quarantinedTo: parked };
      }
      // A proof fetched from the hub is kept, so the next check needs no hub.
      if (verdict.status === 'intact' && proofToWrite !== null) await writeProof(dir, proofToWrite);
      return { ...verdict, quarantinedTo: null };
    }),

    restorePointers: effect<RestorePointersInput, RestorePointersOutput>(async ({ intact, unproven }) => {
      const services: PointerOutcome[] = [];
      const ids = new Set([...Object.keys(intact), ...(await readdir(home.services).catch(() => [] as string[])).filter((n) => !n.startsWith('.'))]);
      for (const id of [...ids].sort()) {
        const serviceDir = home.serviceDir(id);
        const versions = [...(intact[id] ?? [])].sort(semver.rcompare);
        let pointer: string | null;
        let unreadable: string | null = null;
        try {
          pointer = await ctx.adapter.readCurrent(serviceDir);
        } catch (err) {
          // A half-written current.json (Windows): as if it pointed nowhere.
          pointer = null;
          unreadable = (err as Error).message;
        }
        const highest = versions[0] ?? null;
        const previousOf = (current: string | null): string | null => versions.find((x) => x !== current) ?? null;
        if (pointer !== null && versions.includes(pointer)) {
          services.push({ id, current: pointer, previous: previousOf(pointer), repaired: null });
          continue;
        }
        // Points at a folder left in place without proof: not ours to judge; left as it is.
        if (pointer !== null && (unproven[id] ?? []).includes(pointer) && (await exists(home.versionDir(id, pointer)))) {
          if (versions.length > 0) services.push({ id, current: null, previous: highest, repaired: null });
          continue;
        }
        if (pointer === null && unreadable === null) {
          // No pointer at all is a state a user can choose (the current version uninstalled).
          if (versions.length > 0) services.push({ id, current: null, previous: highest, repaired: null });
          continue;
        }
        // Dangling (its folder is gone or was quarantined) or half-written: the highest intact
        // version becomes current, or there is none.
        const why = unreadable !== null ? `the pointer is unreadable (${unreadable})` : `the pointer names ${pointer ?? '?'}, which is not an intact version`;
        if (highest !== null) await ctx.adapter.writeCurrent(serviceDir, highest);
        else if (await exists(serviceDir)) await ctx.adapter.removeCurrent(serviceDir);
        ctx.warn(`${id}: ${why}; current is now ${highest ?? 'none'}`);
        if (highest !== null || pointer !== null || unreadable !== null) services.push({ id, current: highest, previous: previousOf(highest), repaired: { from: pointer, to: highest, why } });
      }
      return { services };
    }),
  };
}
