// The package's own version (the CLI's --version, the hub's index and OpenAPI document). The
// same code runs from sources (tests) and from dist/, so package.json is found by walking up,
// not by a fixed relative path.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface PackageJson {
  name?: string;
  version?: string;
}

function readPackage(dir: string): PackageJson | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
  } catch {
    return undefined;
  }
}

/** The directory of modelhub's package.json. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (readPackage(dir)?.name === 'modelhub') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json of modelhub not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

let cached: string | undefined;

export function packageVersion(): string {
  cached ??= readPackage(packageRoot())?.version ?? '0.0.0';
  return cached;
}
