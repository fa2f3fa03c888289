// Rules a manifest must satisfy beyond its shape. The hub (at publish), pack, and the node
// (before install or model pull, before any byte of the release is downloaded) all apply them,
// so a release that passes one passes the others.
import { ModelhubError } from '../errors.js';
import type { Manifest } from './manifest.js';
import { execProgramProblem, pathListViolation } from './safe-path.js';

export function manifestProblems(m: Manifest): string[] {
  const problems: string[] = [];
  // One rule set for every path that becomes a file (src/schemas/safe-path.ts).
  const violation = pathListViolation(m.files.map((f) => f.path));
  if (violation !== undefined) problems.push(`files: ${violation.message}`);
  const paths = new Set(m.files.map((f) => f.path));
  if (m.kind === 'service') {
    if (m.service.service_id !== m.id) problems.push(`service.service_id: "${m.service.service_id}" differs from id "${m.id}"`);
    if (m.service.version !== m.version) problems.push(`service.version: "${m.service.version}" differs from version "${m.version}"`);
    if (m.service.platforms[m.platform] === undefined) problems.push(`service.platforms: no entry for platform "${m.platform}"`);
    if (!paths.has('service.json')) problems.push('files: service.json is missing');
    // Every platform's program must be safe to run; this platform's must also be in the package.
    for (const [platform, entry] of Object.entries(m.service.platforms)) {
      const problem = execProgramProblem(entry.exec.program, platform === m.platform ? paths : undefined);
      if (problem !== undefined) problems.push(`service.platforms.${platform}.exec.program: ${problem}`);
    }
  }
  return problems;
}

export function assertManifestConsistent(m: Manifest): void {
  const problems = manifestProblems(m);
  if (problems.length > 0) {
    throw new ModelhubError('MANIFEST_INVALID', `manifest: ${problems.join('; ')}`, { details: { problems } });
  }
}
