// Each installed version keeps its signed manifest and signature in `<version>/.modelhub/`
// (SPEC §13): written while staging, before the switch, byte for byte what the hub served, and
// accepted by the real minisign. No release file may live below `.modelhub/`.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ModelhubError } from '../../src/errors.js';
import { manifestProblems } from '../../src/schemas/manifest-rules.js';
import type { Manifest } from '../../src/schemas/manifest.js';
import { parsePublicKey } from '../../src/sign/minisign-format.js';
import { proofPaths, readProof, verifyProof } from '../../src/engine/version-proof.js';
import { checkVersionFiles } from '../../src/engine/version-check.js';
import type { BuiltRelease } from '../helpers/releases.js';
import { makeBench, type Bench } from './fixture.js';

const run = promisify(execFile);
let b: Bench;
let service: BuiltRelease;
let model: BuiltRelease;

beforeAll(async () => {
  b = await makeBench();
  service = await b.publish({ version: '1.0.0' });
  await b.publish({ version: '1.1.0' });
  model = await b.publishModel({ id: 'proof-model', version: '1.0.0', files: { 'weights.bin': 200_000, 'config.json': 10 } });
}, 120_000);

async function keys() {
  const parsed = parsePublicKey(await readFile(b.key.pub, 'utf8'));
  if (!parsed.ok) throw new Error(parsed.message);
  return [parsed.value];
}

describe('the proof kept with each version', () => {
  it('an installed service version and a pulled model keep the signed manifest and signature', async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true });
    const pulled = await b.cli(home, ['models', 'pull', 'proof-model@1.0.0']);
    expect(pulled.result, pulled.stdout + pulled.stderr).toMatchObject({ ok: true });

    const serviceDir = path.join(home, 'services', 'demo-echo', '1.0.0');
    const modelDir = path.join(home, 'models', 'proof-model', '1.0.0');
    for (const [dir, release] of [[serviceDir, service], [modelDir, model]] as const) {
      const proof = await readProof(dir);
      expect(proof?.manifestText).toBe(release.manifestText);
      expect(proof?.signatureText).toBe(await readFile(path.join(release.dir, 'manifest.json.minisig'), 'utf8'));
      // The real minisign accepts the kept pair as it is.
      await run('minisign', ['-V', '-p', b.key.pub, '-m', proofPaths(dir).manifest]);
      const proven = verifyProof(proof!, { kind: release.manifest.kind, id: release.manifest.id, version: '1.0.0' }, await keys());
      expect(proven.manifest.id).toBe(release.manifest.id);
      // The proof folder is not a file of the release: nothing modified, missing or extra.
      expect(await checkVersionFiles(dir, release.manifest.files)).toMatchObject({ modified: [], missing: [], extra: [] });
    }
  });

  it("a version's proof proves nothing about another version", async () => {
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true });
    const proof = await readProof(path.join(home, 'services', 'demo-echo', '1.0.0'));
    let caught: unknown;
    try {
      verifyProof(proof!, { kind: 'service', id: 'demo-echo', version: '1.1.0' }, await keys());
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ModelhubError);
    expect((caught as ModelhubError).code).toBe('MANIFEST_MISMATCH');
    // A signature that does not cover the manifest fails too.
    expect(() => verifyProof({ ...proof!, manifestText: proof!.manifestText.replace('1.0.0', '1.0.1') }, { kind: 'service', id: 'demo-echo', version: '1.0.0' }, [])).toThrow(/trust store is empty/);
  });

  it('no release file may live below .modelhub/, in any case', () => {
    const m = JSON.parse(model.manifestText) as Manifest;
    for (const p of ['.modelhub/manifest.json', '.MODELHUB/x.bin', '.modelhub']) {
      const problems = manifestProblems({ ...m, files: [{ path: p, sha256: 'a'.repeat(64), size: 1 }] });
      expect(problems.join('\n'), p).toMatch(/reserved/);
    }
    // Deeper down the name is an ordinary folder name.
    expect(manifestProblems({ ...m, files: [{ path: 'weights/.modelhub', sha256: 'a'.repeat(64), size: 1 }] })).toEqual([]);
  });
});
