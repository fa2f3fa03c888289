// Deciding whether a service release may be installed (SPEC §3). Pure: text and keys in, a
// typed manifest out, or a ModelhubError with the first failed check; nothing passes by default.
import semver from 'semver';
import { ModelhubError } from '../errors.js';
import { serviceManifestSchema, type ServiceManifest } from '../schemas/manifest.js';
import { assertManifestConsistent } from '../schemas/manifest-rules.js';
import { parseJsonOrThrow } from '../schemas/parse.js';
import type { PublicKey } from '../sign/minisign-format.js';
import { verifyOrThrow } from '../sign/verify.js';

export interface ReleaseCheck {
  id: string;
  version: string;
  platform: string;
  allowDowngrade: boolean;
  installedCurrent: string | null;
  manifestText: string;
  signatureText: string;
  trustedKeys: readonly PublicKey[];
}

export function verifyServiceRelease(c: ReleaseCheck): { manifest: ServiceManifest; keyId: string } {
  // 1. The signature verifies against a key in the trust store (UNTRUSTED_KEY / SIGNATURE_INVALID).
  if (c.trustedKeys.length === 0) {
    throw new ModelhubError('UNTRUSTED_KEY', 'the trust store is empty: add the publisher key with `modelhub trust add KEY.pub`');
  }
  const { keyId } = verifyOrThrow({ message: Buffer.from(c.manifestText, 'utf8'), signature: c.signatureText, trustedKeys: c.trustedKeys });
  // 2. The signed bytes are a well-formed service manifest: its file names follow the one path
  //    rule set, and every platform's exec.program is a bare command or a safe path (for this
  //    platform, one of its files) — refused here, before a byte of the package is downloaded.
  const manifest = parseJsonOrThrow(serviceManifestSchema, c.manifestText, 'MANIFEST_INVALID', 'manifest');
  assertManifestConsistent(manifest);
  // 3. It is the release that was asked for: no mix-and-match of id, version or platform.
  const asked: [string, string, string][] = [
    ['kind', manifest.kind, 'service'],
    ['id', manifest.id, c.id],
    ['version', manifest.version, c.version],
    ['platform', manifest.platform, c.platform],
  ];
  for (const [field, got, want] of asked) {
    if (got !== want) {
      throw new ModelhubError('MANIFEST_MISMATCH', `the signed manifest is for ${field} "${got}", but "${want}" was asked for`, { details: { field, manifest: got, requested: want } });
    }
  }
  // 4. No downgrade (replay of an older signed release) unless asked for explicitly.
  if (c.installedCurrent !== null && semver.valid(c.installedCurrent) !== null && semver.lt(manifest.version, c.installedCurrent) && !c.allowDowngrade) {
    throw new ModelhubError('DOWNGRADE_REFUSED', `${c.id} ${manifest.version} is older than the installed ${c.installedCurrent}; pass --allow-downgrade to install it`);
  }
  return { manifest, keyId };
}
