// `modelhub verify` (SPEC §13): every installed version (or one id, or one id@version) re-hashed
// against the signed manifest it keeps, as `rpm -V` does. The results are recorded in engine.db
// (version_checks) so the page can show a damaged version without hashing on every refresh.
import { z } from 'zod';
import type { DamagedVersionView, VersionCheckValue, VerifyReportValue } from '../client/types.js';
import { ModelhubError } from '../errors.js';
import { modelManifestSchema, serviceManifestSchema, type ManifestFile } from '../schemas/manifest.js';
import type { PublicKey } from '../sign/minisign-format.js';
import type { VerifyTarget } from '../client/types.js';
import type { Db } from './db.js';
import type { Home } from './home.js';
import type { Registry } from './registry.js';
import { checkVersionFiles, isIntact } from './version-check.js';
import { readProof, verifyProof } from './version-proof.js';

export type { VerifyTarget } from '../client/types.js';

type Kind = 'service' | 'model';

/** The manifest recorded at install: what a version from before proofs is checked against. */
function registeredFiles(kind: Kind, text: string | undefined): ManifestFile[] | null {
  if (text === undefined) return null;
  try {
    const r = (kind === 'service' ? serviceManifestSchema : modelManifestSchema).safeParse(JSON.parse(text));
    return r.success ? r.data.files : null;
  } catch {
    return null;
  }
}

async function checkOne(o: { home: Home; registry: Registry; keys: readonly PublicKey[] }, kind: Kind, id: string, version: string, signal?: AbortSignal): Promise<VersionCheckValue> {
  const dir = kind === 'service' ? o.home.versionDir(id, version) : o.home.modelDir(id, version);
  const registered = registeredFiles(kind, kind === 'service' ? o.registry.serviceManifest(id, version) : o.registry.modelManifest(id, version));
  let files: ManifestFile[] | null = registered;
  let proof: VersionCheckValue['proof'] = 'registry';
  let problem: string | null = null;
  const kept = await readProof(dir);
  if (kept !== null) {
    try {
      files = verifyProof(kept, { kind, id, version }, o.keys).manifest.files;
      proof = 'signed';
    } catch (err) {
      proof = 'invalid';
      problem = `the proof in .modelhub/ does not verify: ${(err as Error).message}`;
    }
  }
  if (files === null) {
    return { id, version, ok: false, modified: [], missing: [], extra: [], proof, problem: problem ?? 'neither a proof nor a recorded manifest to check against' };
  }
  const c = await checkVersionFiles(dir, files, signal);
  return { id, version, ok: isIntact(c) && proof !== 'invalid', modified: c.modified, missing: c.missing, extra: c.extra, proof, problem };
}

/**
 * @internal engine.db is not part of the public API.
 * Checks the installed versions the target names (NOT_FOUND when it names none) and records
 * each result.
 */
export async function verifyInstalled(o: { db: Db; home: Home; registry: Registry; keys: readonly PublicKey[]; now: () => number }, target: VerifyTarget, signal?: AbortSignal): Promise<VerifyReportValue> {
  const wanted = (id: string, version: string): boolean => (target.id == null || target.id === id) && (target.version == null || target.version === version);
  const services = o.registry.installedServices().flatMap((s) => s.versions.map((version) => ({ id: s.id, version })));
  const models = o.registry.models().flatMap((m) => m.versions.map((version) => ({ id: m.id, version })));
  const report: VerifyReportValue = { services: [], models: [] };
  for (const s of services.filter((v) => wanted(v.id, v.version))) report.services.push(await checkOne(o, 'service', s.id, s.version, signal));
  for (const m of models.filter((v) => wanted(v.id, v.version))) report.models.push(await checkOne(o, 'model', m.id, m.version, signal));
  if (target.id != null && report.services.length + report.models.length === 0) {
    throw new ModelhubError('NOT_FOUND', `${target.id}${target.version == null ? '' : `@${target.version}`} is not installed`);
  }
  const record = o.db.prepare(
    `INSERT INTO version_checks (kind, id, version, checked_at, ok, result) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (kind, id, version) DO UPDATE SET checked_at = excluded.checked_at, ok = excluded.ok, result = excluded.result`,
  );
  o.db.transaction(() => {
    for (const [kind, list] of [['service', report.services], ['model', report.models]] as const) {
      for (const v of list) record.run(kind, v.id, v.version, o.now(), v.ok ? 1 : 0, JSON.stringify({ modified: v.modified, missing: v.missing }));
    }
  })();
  return report;
}

const recordedResult = z.object({ modified: z.array(z.string()), missing: z.array(z.string()) });

/** @internal Per id, the installed versions whose last check found damage (for the page). */
export function damagedVersions(db: Db, kind: Kind): Map<string, DamagedVersionView[]> {
  // Only checks of the version as installed now: one removed, or installed again since, is not damaged.
  const table = kind === 'service' ? 'service_versions' : 'models';
  const rows = db
    .prepare(
      `SELECT c.id, c.version, c.checked_at, c.result FROM version_checks c
       JOIN ${table} v ON v.id = c.id AND v.version = c.version AND v.installed_at <= c.checked_at
       WHERE c.kind = ? AND c.ok = 0 ORDER BY c.id, c.version`,
    )
    .all(kind) as { id: string; version: string; checked_at: number; result: string }[];
  const out = new Map<string, DamagedVersionView[]>();
  for (const r of rows) {
    const parsed = recordedResult.safeParse(JSON.parse(r.result));
    if (!parsed.success) continue;
    out.set(r.id, [...(out.get(r.id) ?? []), { version: r.version, modified: parsed.data.modified.length, missing: parsed.data.missing.length, checked_at: new Date(r.checked_at).toISOString() }]);
  }
  return out;
}
