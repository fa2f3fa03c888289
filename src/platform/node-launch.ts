// How the engine runs its own Node scripts as child processes (the service supervisor) and
// where it finds them, also when it is embedded in an Electron app.
//
// Inside Electron, `process.execPath` is the app itself: spawned as is, it opens a second app
// window instead of running the script. ELECTRON_RUN_AS_NODE=1 makes it behave as plain Node.
// Scripts packed into `app.asar` cannot be executed by a child process; electron-builder's
// `asarUnpack` puts them in `app.asar.unpacked`, which is where we look first.
import { existsSync } from 'node:fs';
import path from 'node:path';

export interface NodeLaunch {
  command: string;
  /** Added to the child's environment. */
  env: Record<string, string>;
}

export function nodeLaunch(override?: string, versions: NodeJS.ProcessVersions = process.versions, execPath: string = process.execPath): NodeLaunch {
  const inElectron = typeof (versions as NodeJS.ProcessVersions & { electron?: string }).electron === 'string';
  return { command: override ?? execPath, env: inElectron ? { ELECTRON_RUN_AS_NODE: '1' } : {} };
}

const ASAR = `${path.sep}app.asar${path.sep}`;

/** The same file in `app.asar.unpacked` when `file` lies inside an `app.asar` archive. */
export function unpackedPath(file: string): string {
  const i = file.lastIndexOf(ASAR);
  if (i < 0) return file;
  return `${file.slice(0, i)}${path.sep}app.asar.unpacked${path.sep}${file.slice(i + ASAR.length)}`;
}

/** The first candidate that exists, preferring its unpacked copy; null when none does. */
export function findScript(candidates: readonly string[]): string | null {
  for (const c of candidates) {
    const unpacked = unpackedPath(c);
    if (unpacked !== c && existsSync(unpacked)) return unpacked;
    if (existsSync(c)) return c;
  }
  return null;
}
