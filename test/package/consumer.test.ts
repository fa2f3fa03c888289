// The package as an app developer gets it: `npm pack` holds compiled code and .d.ts files, no
// tests; a strict TypeScript consumer (module nodenext, skipLibCheck off, outside this repo so
// only the package's own dependencies resolve) compiles against every entry point with no deep
// import, and its compiled code runs.
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const FIXTURE = path.join(REPO, 'test', 'fixtures', 'consumer');

interface PackResult {
  filename: string;
  files: { path: string }[];
}

let packed: PackResult;
let consumer: string;

async function tsc(dir: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, [TSC, '-p', dir], { cwd: dir });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  const work = await tempDir('modelhub-pack-');
  // --ignore-scripts: dist/ is already built (the global setup checks it is fresh).
  const r = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: REPO, maxBuffer: 64 * 1024 * 1024 });
  packed = (JSON.parse(r.stdout) as PackResult[])[0]!;

  consumer = path.join(work, 'consumer');
  await cp(FIXTURE, consumer, { recursive: true });
  // Its own package (in the repo the fixture files belong to modelhub's package scope, so the
  // tests can import them by the same names through package self-reference).
  await writeFile(path.join(consumer, 'package.json'), JSON.stringify({ name: 'modelhub-consumer', private: true, type: 'module' }));
  const pkgDir = path.join(consumer, 'node_modules', 'modelhub');
  await mkdir(pkgDir, { recursive: true });
  await run('tar', ['xzf', path.join(work, packed.filename), '-C', pkgDir, '--strip-components=1']);
  // What `npm install modelhub` would put beside it: its dependencies (not our devDependencies),
  // and @types/node, which any Node or Electron app has.
  const pkg = (await import(path.join(pkgDir, 'package.json'), { with: { type: 'json' } })) as { default: { dependencies: Record<string, string> } };
  for (const dep of [...Object.keys(pkg.default.dependencies), '@types/node']) {
    const link = path.join(consumer, 'node_modules', dep);
    await mkdir(path.dirname(link), { recursive: true });
    await symlink(path.join(REPO, 'node_modules', dep), link);
  }
}, 120_000);

describe('the packed package', () => {
  it('holds the compiled code and .d.ts files of every entry point, and no tests', () => {
    const files = packed.files.map((f) => f.path);
    for (const entry of ['dist/src/index', 'dist/src/electron/main', 'dist/src/electron/preload', 'dist/src/client/index', 'dist/hub/index']) {
      expect(files).toContain(`${entry}.js`);
      expect(files).toContain(`${entry}.d.ts`);
    }
    expect(files.filter((f) => f.startsWith('dist/test/') || /\.test\.(js|ts)$/.test(f) || f.startsWith('test/'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files).toContain('dist/src/runtime/supervisor.js');
    expect(files).toContain('dist/src/stage/prestage-worker.js');
  });

  it('runs its bin (the bundled CLI) with nothing beside it but its dependencies', async () => {
    const pkgDir = path.join(consumer, 'node_modules', 'modelhub');
    const pkg = (await import(path.join(pkgDir, 'package.json'), { with: { type: 'json' } })) as { default: { version: string; bin: { modelhub: string } } };
    const bin = path.join(pkgDir, pkg.default.bin.modelhub);
    expect((await run(bin, ['--version'], { cwd: consumer })).stdout.trim()).toBe(pkg.default.version);
    // A node command: the engine's chunks, and better-sqlite3 from the app's node_modules.
    const home = await tempDir('modelhub-pack-home-');
    const status = await run(bin, ['status', '--home', home, '--json'], { cwd: consumer });
    expect(JSON.parse(status.stdout.trim().split('\n').pop() ?? '')).toMatchObject({ ok: true });
  });

  it('compiles a strict nodenext consumer against modelhub, electron/main, electron/preload, client and hub', async () => {
    const r = await tsc(consumer);
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
    expect((await readdir(path.join(consumer, 'out'))).sort()).toEqual(['app.js', 'main.js', 'preload.js', 'renderer.js', 'run.js']);
  }, 120_000);

  it('runs: an Engine, a hub and the page client from the compiled consumer', async () => {
    const r = await run(process.execPath, [path.join(consumer, 'out', 'run.js')], { cwd: consumer });
    const out = JSON.parse(r.stdout.trim()) as { codes: number; updates: { services: unknown[]; models: unknown[] }; client: string };
    expect(out.codes).toBeGreaterThan(20);
    expect(out.updates).toEqual({ services: [], models: [] });
    expect(out.client).toBe('function');
  }, 60_000);

  it('refuses deep imports: only the exported entry points resolve', async () => {
    const deep = path.join(consumer, 'deep');
    await mkdir(deep, { recursive: true });
    await writeFile(path.join(deep, 'package.json'), '{ "type": "module" }\n');
    await writeFile(path.join(deep, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] }, include: ['*.ts'] }));
    await writeFile(path.join(deep, 'deep.ts'), "import { Engine } from 'modelhub/dist/src/engine/engine.js';\nexport const e = Engine;\n");
    const r = await tsc(deep);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("Cannot find module 'modelhub/dist/src/engine/engine.js'");
  }, 60_000);
});
