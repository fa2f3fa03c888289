// The proof each installed version keeps of what it is (SPEC §13): the signed manifest and its
// minisign signature, exactly as the hub served them, in `<version>/.modelhub/` beside the
// version's files — `services/<id>/<version>/.modelhub/` and `models/<id>/<version>/.modelhub/`.
// With it a version folder can be checked without engine.db and without the hub: rebuild,
// verify and repair start here. It is written during staging, durably, before the version is
// switched in; no release file may live below it (the one path rule set, safe-path.ts).
//
// Versions installed before this existed have no proof: they keep working (the registry holds
// their manifest) and get one on their next install or repair.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { modelManifestSchema, serviceManifestSchema, type ModelManifest, type ServiceManifest } from '../schemas/manifest.js';
import { assertManifestConsistent } from '../schemas/manifest-rules.js';
import { parseJsonOrThrow } from '../schemas/parse.js';
import { RECORDS_DIR } from '../schemas/safe-path.js';
import type { PublicKey } from '../sign/minisign-format.js';
import { verifyOrThrow } from '../sign/verify.js';
import { fsyncDir, writeFileAtomic } from '../fs/durable.js';

export { RECORDS_DIR as PROOF_DIR };
export const PROOF_MANIFEST = 'manifest.json';
export const PROOF_SIGNATURE = 'manifest.json.minisig';

export interface VersionProof {
  manifestText: string;
  signatureText: string;
}

export type ProofKind = 'service' | 'model';

export function proofPaths(versionDir: string): { dir: string; manifest: string; signature: string } {
  const dir = path.join(versionDir, RECORDS_DIR);
  return { dir, manifest: path.join(dir, PROOF_MANIFEST), signature: path.join(dir, PROOF_SIGNATURE) };
}

/**
 * Writes the proof into a version (or staging) folder: each file by temp name → fsync → rename
 * → fsync of `.modelhub/`, then the folder's own entry is fsynced, so a power cut after this
 * resolves never leaves a version without its proof.
 */
export async function writeProof(versionDir: string, proof: VersionProof): Promise<void> {
  const p = proofPaths(versionDir);
  await mkdir(p.dir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(p.manifest, proof.manifestText);
  await writeFileAtomic(p.signature, proof.signatureText);
  await fsyncDir(versionDir);
}

/** The proof in a version folder; null when either file is absent (a version from before proofs). */
export async function readProof(versionDir: string): Promise<VersionProof | null> {
  const p = proofPaths(versionDir);
  try {
    const [manifestText, signatureText] = await Promise.all([readFile(p.manifest, 'utf8'), readFile(p.signature, 'utf8')]);
    return { manifestText, signatureText };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}

export type ProvenManifest = { kind: 'service'; manifest: ServiceManifest; keyId: string } | { kind: 'model'; manifest: ModelManifest; keyId: string };

/**
 * The proof's manifest, only if its signature verifies against a trusted key, its shape and
 * path rules hold, and it is the manifest of the folder it was found in (kind, id, version): a
 * proof copied from another version proves nothing about this one. Throws the first failed
 * check (UNTRUSTED_KEY, SIGNATURE_INVALID, MANIFEST_INVALID, MANIFEST_MISMATCH).
 */
export function verifyProof(proof: VersionProof, want: { kind: ProofKind; id: string; version: string }, trustedKeys: readonly PublicKey[]): ProvenManifest {
  if (trustedKeys.length === 0) throw new ModelhubError('UNTRUSTED_KEY', 'the trust store is empty: add the publisher key with `modelhub trust add KEY.pub`');
  const { keyId } = verifyOrThrow({ message: Buffer.from(proof.manifestText, 'utf8'), signature: proof.signatureText, trustedKeys });
  const proven: ProvenManifest =
    want.kind === 'service'
      ? { kind: 'service', manifest: parseJsonOrThrow(serviceManifestSchema, proof.manifestText, 'MANIFEST_INVALID', 'manifest'), keyId }
      : { kind: 'model', manifest: parseJsonOrThrow(modelManifestSchema, proof.manifestText, 'MANIFEST_INVALID', 'manifest'), keyId };
  assertManifestConsistent(proven.manifest);
  const m = proven.manifest;
  if (m.kind !== want.kind || m.id !== want.id || m.version !== want.version) {
    throw new ModelhubError('MANIFEST_MISMATCH', `the proof in ${want.id}/${want.version} is the manifest of ${m.kind} ${m.id} ${m.version}`, {
      details: { kind: m.kind, id: m.id, version: m.version },
    });
  }
  return proven;
}
