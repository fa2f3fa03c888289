// Which version "latest" means, for the hub's catalog and the node alike.
import semver from 'semver';

/** The newest version, preferring full releases over prereleases; null for none. */
export function latestVersion(versions: readonly string[]): string | null {
  const sorted = [...new Set(versions)].filter((v) => semver.valid(v) !== null).sort(semver.rcompare);
  return sorted.find((v) => semver.prerelease(v) === null) ?? sorted[0] ?? null;
}
