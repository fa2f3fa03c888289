// Runs once before any test file: the CLI tests run the compiled CLI in dist/, and the runtime
// tests start the compiled supervisor, so a dist/ older than its sources would test old code
// while reporting on new code. Stale or missing output fails the run at once, naming the files
// and the command to run.
//
// Why fail instead of building here: tsc rewrites dist/ files in place (not atomically), and this
// working tree is shared — another vitest run, a service started by a test, or `npm start` may be
// loading dist/ modules at that moment and would read half-written files. `npm test` builds
// before vitest starts, so only a bare `npx vitest run …` after an edit meets this check, and
// whoever runs it can build first.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The sources of what the tests run compiled (the CLI, the hub, the machines, the supervisor). */
const SOURCE_ROOTS = ['src', 'hub', 'machines'];
const BUILD_COMMAND = 'npm run build';
/** The CLI the tests run: bundled from dist/ by the build (scripts/bundle-cli.mjs). */
const CLI_BUNDLE = path.join('dist', 'cli', 'modelhub.js');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(full));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

function mtimeMs(file: string): number | null {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return null;
  }
}

/** Sources whose compiled .js in dist/ is missing or older than the source, as repo-relative paths. */
export function staleSources(repo: string = REPO): string[] {
  const stale: string[] = [];
  let newest = 0;
  for (const root of SOURCE_ROOTS) {
    for (const ts of tsFiles(path.join(repo, root))) {
      const rel = path.relative(repo, ts);
      const js = path.join(repo, 'dist', rel.replace(/\.ts$/, '.js'));
      const built = mtimeMs(js);
      const source = mtimeMs(ts);
      if (built === null || (source !== null && built < source)) stale.push(rel);
      else newest = Math.max(newest, built);
    }
  }
  // The bundle is made from dist/: older than any of it, it is the CLI as it was before.
  const bundle = mtimeMs(path.join(repo, CLI_BUNDLE));
  if (bundle === null || bundle < newest) stale.push(CLI_BUNDLE);
  return stale.sort();
}

export function setup(): void {
  const stale = staleSources();
  if (stale.length === 0) return;
  const shown = stale.slice(0, 20).map((f) => `  ${f}`);
  if (stale.length > shown.length) shown.push(`  … and ${stale.length - shown.length} more`);
  throw new Error(
    [
      `dist/ is stale: ${stale.length} compiled file(s) are missing or older than their source:`,
      ...shown,
      `The CLI and runtime tests run dist/, so they would test old code. Build first:`,
      `  ${BUILD_COMMAND}`,
      `(or run the whole suite with npm test, which builds before it runs vitest)`,
    ].join('\n'),
  );
}
