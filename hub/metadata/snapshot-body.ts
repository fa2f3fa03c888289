// What the catalog snapshot says, computed from the catalog rows alone (pure): per service and
// platform the versions with their manifest's SHA-256 and rollout share, latest (fully rolled
// out) and stable; per
// model its versions, latest and default. The same rows always give the same body.
import { createHash } from 'node:crypto';
import { latestVersion } from '../../src/schemas/versions.js';
import type { SnapshotBody } from '../../src/metadata/formats.js';
import type { ReleaseRow } from '../catalog.js';

export function manifestSha256(manifestText: string): string {
  return createHash('sha256').update(manifestText, 'utf8').digest('hex');
}

export function snapshotBody(services: readonly ReleaseRow[], models: readonly ReleaseRow[]): SnapshotBody {
  const body: SnapshotBody = { services: {}, models: {} };
  for (const row of services) {
    const byPlatform = (body.services[row.id] ??= {});
    const entry = (byPlatform[row.platform as keyof typeof byPlatform] ??= { latest: null, stable: null, versions: {} });
    entry.versions[row.version] = { manifest_sha256: manifestSha256(row.manifest), rollout: row.rollout };
  }
  for (const [id, byPlatform] of Object.entries(body.services)) {
    for (const [platform, entry] of Object.entries(byPlatform)) {
      if (entry === undefined) continue;
      const rows = services.filter((r) => r.id === id && r.platform === platform);
      // What every node is offered; a node in a staged rollout computes its own (rollout.ts).
      entry.latest = latestVersion(rows.filter((r) => r.rollout >= 100).map((r) => r.version));
      entry.stable = latestVersion(rows.filter((r) => r.stable === 1).map((r) => r.version));
    }
  }
  for (const row of models) {
    const entry = (body.models[row.id] ??= { default_version: null, latest: null, versions: {} });
    entry.versions[row.version] = { manifest_sha256: manifestSha256(row.manifest) };
  }
  for (const [id, entry] of Object.entries(body.models)) {
    const rows = models.filter((r) => r.id === id);
    entry.latest = latestVersion(Object.keys(entry.versions));
    // As GET /api/models answers: the highest stable version, else the highest.
    entry.default_version = latestVersion(rows.filter((r) => r.stable === 1).map((r) => r.version)) ?? entry.latest;
  }
  return body;
}
