// Staged rollout (SPEC §12): a release offered to PERCENT % of nodes. Whether a node is in is a
// hash of (node id, service id, version) falling below the percentage — the same answer every
// time for one node, about PERCENT % of nodes overall, and different nodes first for each
// release. The percentage is in the signed snapshot, so a mirror cannot change it.
import { createHash } from 'node:crypto';
import semver from 'semver';

/** Where a node falls for a release, in [0, 100). */
export function rolloutPosition(nodeId: string, id: string, version: string): number {
  const digest = createHash('sha256').update(`${nodeId}\u0000${id}\u0000${version}`, 'utf8').digest();
  return (digest.readUInt32BE(0) / 2 ** 32) * 100;
}

export function inRollout(nodeId: string, id: string, version: string, percent: number): boolean {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return rolloutPosition(nodeId, id, version) < percent;
}

/**
 * The latest version for this node: the highest one it is in the rollout of. Nodes outside a
 * release's rollout see the previous latest; 0 % halts a rollout, 100 % completes it.
 */
export function latestForNode(versions: Readonly<Record<string, { rollout: number }>>, nodeId: string, id: string): string | null {
  const offered = Object.entries(versions)
    .filter(([v, e]) => semver.valid(v) !== null && inRollout(nodeId, id, v, e.rollout))
    .map(([v]) => v);
  // Full releases before prereleases, as everywhere else.
  const full = offered.filter((v) => semver.prerelease(v) === null);
  const pool = full.length > 0 ? full : offered;
  return pool.sort(semver.rcompare)[0] ?? null;
}
