// Inside Electron, process.execPath is the app: a child spawned with it opens another app window
// unless ELECTRON_RUN_AS_NODE=1 is set. The engine's children (the service supervisor) must run
// as Node. A stand-in executable that refuses to run a script without that variable plays the
// Electron binary; process.versions.electron is faked as Electron's main process has it.
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { nodeLaunch, unpackedPath } from '../../src/platform/node-launch.js';
import { makeBench, type Bench } from '../engine/fixture.js';
import { tempDir } from '../helpers/tmp.js';

let b: Bench;
let standIn: string;
const engines: Engine[] = [];

beforeAll(async () => {
  b = await makeBench();
  await b.publish({ version: '1.0.0' });
  standIn = path.join(await tempDir(), 'electron-app');
  await writeFile(
    standIn,
    `#!/bin/sh\nif [ "$ELECTRON_RUN_AS_NODE" != "1" ]; then echo "stand-in Electron: would open a second app window" >&2; exit 97; fi\nexec "${process.execPath}" "$@"\n`,
  );
  await chmod(standIn, 0o755);
});

function fakeElectron(version: string | undefined): void {
  Object.defineProperty(process.versions, 'electron', { value: version, configurable: true, enumerable: true, writable: true });
}

afterEach(async () => {
  for (const e of engines.splice(0)) {
    await e.stop('demo-echo').catch(() => undefined);
    e.close();
  }
  fakeElectron(undefined);
  delete (process.versions as { electron?: string }).electron;
});

async function engineWith(nodeExecutable: string): Promise<Engine> {
  const engine = new Engine({ home: path.join(await tempDir(), 'home'), hub: b.proxy.url, nodeExecutable });
  await engine.trust.add(b.key.pub);
  engines.push(engine);
  return engine;
}

describe('children run as Node under Electron', () => {
  it('sets ELECTRON_RUN_AS_NODE=1 for the supervisor when process.versions.electron is present', async () => {
    fakeElectron('33.0.0');
    const engine = await engineWith(standIn);
    const r = await engine.install({ id: 'demo-echo', version: '1.0.0' });
    expect(r).toMatchObject({ ok: true, current: '1.0.0' });
    const [status] = await engine.status();
    expect(status).toMatchObject({ id: 'demo-echo', running: true, healthy: true });
    // The recorded process is the supervisor, started by the stand-in with the variable set.
    const environ = (await readFile(`/proc/${status!.pid}/environ`, 'utf8')).split('\0');
    expect(environ).toContain('ELECTRON_RUN_AS_NODE=1');
  });

  it('the stand-in really refuses without it: outside Electron nothing is added, and the start fails', async () => {
    const engine = await engineWith(standIn);
    const r = await engine.install({ id: 'demo-echo', version: '1.0.0' });
    expect(r).toMatchObject({ ok: false, state: 'rolled_back', error: { code: 'START_FAILED' } });
  });

  it('chooses the executable and the unpacked script path', () => {
    expect(nodeLaunch(undefined, { ...process.versions, electron: '33.0.0' }, '/Applications/App.app/Contents/MacOS/App')).toEqual({
      command: '/Applications/App.app/Contents/MacOS/App',
      env: { ELECTRON_RUN_AS_NODE: '1' },
    });
    expect(nodeLaunch('/usr/bin/node', process.versions, '/x')).toEqual({ command: '/usr/bin/node', env: {} });
    const sep = path.sep;
    const inAsar = ['', 'opt', 'App', 'resources', 'app.asar', 'node_modules', 'modelhub', 'dist', 'src', 'runtime', 'supervisor.js'].join(sep);
    expect(unpackedPath(inAsar)).toBe(['', 'opt', 'App', 'resources', 'app.asar.unpacked', 'node_modules', 'modelhub', 'dist', 'src', 'runtime', 'supervisor.js'].join(sep));
    expect(unpackedPath('/opt/app/dist/x.js')).toBe('/opt/app/dist/x.js');
  });
});
