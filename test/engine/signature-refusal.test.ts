// The node's own signature check, end to end through the CLI, with a populated trust store.
// The hub verifies signatures at upload, so every bad signature here is put between hub and node:
// each release is published properly, then its manifest.json.minisig is replaced in the hub's
// storage folder. The node must refuse each one with the right code and leave what it had alone:
// the installed service version stays current, no model folder appears.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { decodeSignature, formatSignature } from '../../src/sign/minisign-format.js';
import { signBytes } from '../../src/sign/sign.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, buildServiceRelease, makeKey, type BuiltRelease, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';
import { currentOf } from './fixture.js';
import { editBase64, flipByte, withLine } from '../sign/helpers.js';

const SERVICE = 'sig-echo';
const MODEL = 'sig-model';

let work: string;
let hub: Hub;
let trusted: TestKey;
let alsoTrusted: TestKey;
let stranger: TestKey;

async function resign(manifestText: string, k: TestKey): Promise<string> {
  return formatSignature(signBytes(Buffer.from(manifestText, 'utf8'), await readSecretKeyFile(k.key)));
}

/** Four ways to serve a bad signature, each from the release's own good one. */
type Tamper = (good: string, manifestText: string) => Promise<string>;

interface Case {
  name: string;
  code: 'UNTRUSTED_KEY' | 'SIGNATURE_INVALID';
  /** What the verifier names as the reason (the message starts with it). */
  reason: string;
  tamper: Tamper;
}

let otherManifestSignature: string;

const CASES: Case[] = [
  {
    name: 'a manifest signed by a key the node does not trust, while other keys are trusted',
    code: 'UNTRUSTED_KEY',
    reason: 'unknown_key',
    tamper: (_good, manifestText) => resign(manifestText, stranger),
  },
  {
    name: "a trusted key's signature over a different manifest",
    code: 'SIGNATURE_INVALID',
    reason: 'bad_signature',
    tamper: async () => otherManifestSignature,
  },
  {
    name: 'a flipped byte in the signature',
    // Line 1 is base64 of algorithm (2) ‖ key id (8) ‖ Ed25519 signature (64): byte 40 is in the signature.
    code: 'SIGNATURE_INVALID',
    reason: 'bad_signature',
    tamper: async (good) => withLine(good, 1, (l) => editBase64(l, flipByte(40))),
  },
  {
    name: 'a flipped character in the trusted comment',
    code: 'SIGNATURE_INVALID',
    reason: 'bad_global_signature',
    tamper: async (good) =>
      withLine(good, 2, (l) => {
        const last = l.charCodeAt(l.length - 1);
        return l.slice(0, -1) + String.fromCharCode(last ^ 0x01);
      }),
  },
];

/** Replaces the stored signature of a published release (`file`) and checks the hub now serves it. */
async function tamperInStorage(file: string, servedAt: string, release: BuiltRelease, tamper: Tamper): Promise<string> {
  const good = await readFile(file, 'utf8');
  const bad = await tamper(good, release.manifestText);
  expect(bad).not.toBe(good);
  await writeFile(file, bad);
  const served = await fetch(`${hub.url}${servedAt}`);
  expect(served.status).toBe(200);
  expect(await served.text()).toBe(bad);
  return bad;
}

function cli(home: string, args: string[]): Promise<CliResult> {
  return runCli([...args, '--home', home, '--hub', hub.url, '--json']);
}

async function newHome(): Promise<string> {
  const home = path.join(await tempDir('modelhub-node-'), 'home');
  // A populated trust store: two trusted keys, neither of them the stranger's.
  for (const k of [trusted, alsoTrusted]) {
    const r = await cli(home, ['trust', 'add', k.pub]);
    expect(r.result, r.stderr).toMatchObject({ ok: true, key_id: k.keyId });
  }
  return home;
}

beforeAll(async () => {
  work = await tempDir();
  trusted = await makeKey(work, 'publisher');
  alsoTrusted = await makeKey(work, 'rotated-publisher');
  stranger = await makeKey(work, 'stranger');
  hub = await startHub(work, [trusted]);
  const other = await buildModelRelease(work, trusted, { id: 'unrelated', version: '9.9.9' });
  otherManifestSignature = await readFile(path.join(other.dir, 'manifest.json.minisig'), 'utf8');
  // The untampered signatures verify: the bad ones below differ from these only as each case says.
  expect(decodeSignature(otherManifestSignature).ok).toBe(true);
});

describe('install refuses a bad signature with a populated trust store', () => {
  let home: string;
  const releases = new Map<string, BuiltRelease>();

  beforeAll(async () => {
    for (const version of ['1.0.0', '2.0.0', '2.1.0', '2.2.0', '2.3.0']) {
      const r = await buildServiceRelease(work, trusted, { id: SERVICE, version });
      await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
      releases.set(version, r);
    }
    home = await newHome();
    const first = await cli(home, ['install', `${SERVICE}@1.0.0`, '--no-start']);
    expect(first.result, first.stderr).toMatchObject({ ok: true, current: '1.0.0' });
  });

  CASES.forEach((c, i) => {
    const version = `2.${i}.0`;
    it(`${c.name} → ${c.code}; 1.0.0 stays current`, async () => {
      const release = releases.get(version)!;
      const bad = await tamperInStorage(
        hub.layout.serviceRecord(SERVICE, version, 'linux-x64', 'manifest.json.minisig'),
        `/api/services/${SERVICE}/${version}/linux-x64/manifest.minisig`,
        release,
        c.tamper,
      );
      // Still a well-formed signature: the refusal is the verifier's, not the parser's.
      expect(decodeSignature(bad).ok).toBe(true);

      const r = await cli(home, ['install', `${SERVICE}@${version}`, '--no-start']);
      expect(r.code).toBe(1);
      expect(r.result).toMatchObject({ ok: false, error: { code: c.code }, current: '1.0.0', rolled_back: false });
      expect(String((r.result!.error as { message: string }).message)).toContain(c.reason);
      expect(await currentOf(home, SERVICE)).toBe('1.0.0');
      expect((await readdir(path.join(home, 'services', SERVICE))).sort()).toEqual(['1.0.0', 'current']);
      const list = await cli(home, ['list']);
      expect(list.result).toMatchObject({ ok: true, services: [{ id: SERVICE, current: '1.0.0', versions: ['1.0.0'] }] });
    });
  });
});

describe('models pull refuses a bad signature with a populated trust store', () => {
  let home: string;
  const releases = new Map<string, BuiltRelease>();

  beforeAll(async () => {
    for (const version of ['1.0.0', '2.0.0', '2.1.0', '2.2.0', '2.3.0']) {
      const r = await buildModelRelease(work, trusted, { id: MODEL, version });
      await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
      releases.set(version, r);
    }
    home = await newHome();
    const first = await cli(home, ['models', 'pull', `${MODEL}@1.0.0`]);
    expect(first.result, first.stderr).toMatchObject({ ok: true, version: '1.0.0' });
  });

  CASES.forEach((c, i) => {
    const version = `2.${i}.0`;
    it(`${c.name} → ${c.code}; no model folder appears`, async () => {
      const release = releases.get(version)!;
      await tamperInStorage(hub.layout.modelRecord(MODEL, version, 'manifest.json.minisig'), `/api/models/${MODEL}/${version}/manifest.minisig`, release, c.tamper);

      const r = await cli(home, ['models', 'pull', `${MODEL}@${version}`]);
      expect(r.code).toBe(1);
      expect(r.result).toMatchObject({ ok: false, error: { code: c.code } });
      expect(String((r.result!.error as { message: string }).message)).toContain(c.reason);
      expect(await readdir(path.join(home, 'models', MODEL))).toEqual(['1.0.0']);
      expect((await cli(home, ['models', 'list'])).result).toMatchObject({ ok: true, models: [{ id: MODEL, versions: ['1.0.0'] }] });
      const p = await cli(home, ['models', 'path', `${MODEL}@${version}`]);
      expect(p.result).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_AVAILABLE', reason: 'error' } });
    });
  });
});

describe('control: the same storage swap with a good signature installs', () => {
  it('a manifest signed by the second trusted key (one the hub does not know) installs', async () => {
    const r = await buildServiceRelease(work, trusted, { id: SERVICE, version: '3.0.0' });
    await publishDir(r.dir, { hub: hub.url, token: TEST_TOKEN });
    await tamperInStorage(hub.layout.serviceRecord(SERVICE, '3.0.0', 'linux-x64', 'manifest.json.minisig'), `/api/services/${SERVICE}/3.0.0/linux-x64/manifest.minisig`, r, (_g, text) =>
      resign(text, alsoTrusted),
    );
    const home = await newHome();
    const ok = await cli(home, ['install', `${SERVICE}@3.0.0`, '--no-start']);
    expect(ok.result, ok.stderr).toMatchObject({ ok: true, current: '3.0.0' });
    expect(await currentOf(home, SERVICE)).toBe('3.0.0');
  });
});
