// Rules a manifest must satisfy beyond its shape. Both the hub (at publish) and the node (before
// install) apply them, so a release that passes one passes the other.
import { ModelhubError } from '../errors.js';
import type { Manifest } from './manifest.js';

export function manifestProblems(m: Manifest): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const f of m.files) {
    // Case-folded: the same package must unpack identically on case-insensitive file systems.
    const key = f.path.toLowerCase();
    if (seen.has(key)) problems.push(`files: duplicate path "${f.path}"`);
    seen.add(key);
  }
  const paths = new Set(m.files.map((f) => f.path));
  for (const p of paths) {
    // A file may not also be a directory prefix of another file ("a" and "a/b").
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (paths.has(prefix)) problems.push(`files: "${prefix}" is both a file and a directory`);
    }
  }
  if (m.kind === 'service') {
    if (m.service.service_id !== m.id) problems.push(`service.service_id: "${m.service.service_id}" differs from id "${m.id}"`);
    if (m.service.version !== m.version) problems.push(`service.version: "${m.service.version}" differs from version "${m.version}"`);
    if (m.service.platforms[m.platform] === undefined) problems.push(`service.platforms: no entry for platform "${m.platform}"`);
    if (!paths.has('service.json')) problems.push('files: service.json is missing');
  }
  return problems;
}

export function assertManifestConsistent(m: Manifest): void {
  const problems = manifestProblems(m);
  if (problems.length > 0) {
    throw new ModelhubError('MANIFEST_INVALID', `manifest: ${problems.join('; ')}`, { details: { problems } });
  }
}
