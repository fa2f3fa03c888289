// Trust that holds against a replaying mirror (SPEC §11, TUF's rollback and freeze attacks):
// the node resolves "latest" only from the hub's signed, fresh snapshot, refuses one older than
// it saw or past its expiry, keeps a rollback floor that survives uninstall, and checks every
// manifest against the snapshot. Recorded hub answers are replayed through the test proxy.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { delegationDocument } from '../../src/metadata/statements.js';
import { readSecretKeyFile } from '../../src/sign/keygen.js';
import { makeKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';
import { currentOf, makeBench, type Bench } from './fixture.js';

const run = promisify(execFile);
const METADATA = ['/api/metadata/snapshot', '/api/metadata/snapshot.minisig', '/api/metadata/delegation', '/api/metadata/delegation.minisig', '/api/keys/statements'];

/** The hub's metadata answers as they are now, to be replayed later. */
async function record(b: Bench): Promise<Map<string, Buffer>> {
  const answers = new Map<string, Buffer>();
  for (const p of METADATA) answers.set(p, Buffer.from(await (await fetch(b.hub.url + p)).arrayBuffer()));
  return answers;
}

function replay(b: Bench, answers: Map<string, Buffer>): void {
  for (const [p, body] of answers) b.proxy.substitute.set(p, body);
}

function honest(b: Bench): void {
  for (const p of METADATA) b.proxy.substitute.delete(p);
}

describe('signed, fresh metadata', () => {
  let b: Bench;
  beforeAll(async () => {
    b = await makeBench();
    await b.publish({ version: '1.0.0' });
  });

  it('a replayed older snapshot is refused (rollback), and the floor survives uninstall', async () => {
    const old = await record(b); // only 1.0.0 exists
    await b.publish({ version: '1.1.0' });
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '1.1.0' });
    expect((await b.cli(home, ['uninstall', 'demo-echo'])).result).toMatchObject({ ok: true });

    // A mirror replays the hub's old answers: the node saw a newer serial.
    replay(b, old);
    try {
      const r = await b.cli(home, ['install', 'demo-echo', '--no-start']);
      expect(r.result).toMatchObject({ ok: false, error: { code: 'ROLLBACK_DETECTED' } });
      expect(await currentOf(home, 'demo-echo')).toBeNull();
    } finally {
      honest(b);
    }
    // The floor: 1.1.0 was installed, so 1.0.0 needs an explicit --allow-downgrade.
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'DOWNGRADE_REFUSED' } });
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade'])).result).toMatchObject({ ok: true, current: '1.0.0' });
  });

  it('a manifest the snapshot does not list is refused', async () => {
    const home = await b.newHome();
    // A validly signed manifest (re-signed with the trusted key), but not the one the snapshot pins.
    const r = b.releases.get('demo-echo@1.0.0')!;
    const manifest = JSON.parse(r.manifestText) as { created_at: string };
    const text = JSON.stringify({ ...manifest, created_at: '2030-01-01T00:00:00Z' }, null, 2) + '\n';
    const file = path.join(await tempDir(), 'manifest.json');
    await writeFile(file, text);
    const { signFile } = await import('../../src/sign/sign.js');
    b.proxy.substitute.set('/api/services/demo-echo/1.0.0/linux-x64/manifest', Buffer.from(text));
    b.proxy.substitute.set('/api/services/demo-echo/1.0.0/linux-x64/manifest.minisig', Buffer.from(await signFile(file, await readSecretKeyFile(b.key.key))));
    b.proxy.bytes.clear();
    try {
      const res = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start']);
      expect(res.result).toMatchObject({ ok: false, error: { code: 'MANIFEST_MISMATCH' } });
      // Refused from the metadata alone: not a byte of the package was fetched.
      expect([...b.proxy.bytes.values()].reduce((n, v) => n + v, 0)).toBe(0);
    } finally {
      b.proxy.substitute.clear();
    }
    // A version the snapshot does not list at all.
    expect((await b.cli(home, ['install', 'demo-echo@9.9.9', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'VERSION_NOT_FOUND' } });
  });

  it('a snapshot signed by an uncertified key is refused, and so is a missing delegation once certified metadata was seen', async () => {
    const home = await b.newHome();
    const listed = await b.cli(home, ['models', 'list']);
    expect(listed.code, listed.stdout + listed.stderr).toBe(0);
    const stranger = await makeKey(await tempDir(), 'stranger');
    const snapshot = await (await fetch(`${b.hub.url}/api/metadata/snapshot`)).text();
    const file = path.join(await tempDir(), 'snapshot.json');
    await writeFile(file, snapshot);
    const { signFile } = await import('../../src/sign/sign.js');
    b.proxy.substitute.set('/api/metadata/snapshot.minisig', Buffer.from(await signFile(file, await readSecretKeyFile(stranger.key))));
    try {
      expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' } });
    } finally {
      b.proxy.substitute.clear();
    }
    expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true });
    const before = await currentOf(home, 'demo-echo');
    const jobs = ((await b.cli(home, ['jobs'])).result!.jobs as unknown[]).length;
    // A hub (or mirror) that stops serving the delegation does not make the node fall back to
    // unsigned answers, not even for an explicit version.
    b.proxy.down.add('/api/metadata/delegation');
    try {
      const r = await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start', '--allow-downgrade']);
      expect(r.result).toMatchObject({ ok: false });
      expect(await currentOf(home, 'demo-echo')).toBe(before);
      expect(((await b.cli(home, ['jobs'])).result!.jobs as { state: string }[]).slice(jobs).map((j) => j.state)).toEqual(['failed']);
    } finally {
      b.proxy.down.clear();
    }
  });
});

describe('freshness', () => {
  it('a snapshot past its ttl is refused (freeze), also by a fresh node; an expired delegation too', async () => {
    const b = await makeBench({ metadataTtlSeconds: 2 });
    await b.publish({ version: '1.0.0' });
    const frozen = await record(b);
    await new Promise((r) => setTimeout(r, 2500));
    replay(b, frozen);
    try {
      for (const home of [await b.newHome(), await b.newHome()]) {
        expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'METADATA_EXPIRED' } });
      }
    } finally {
      honest(b);
    }
    // The hub re-signs on its own before half the ttl: the honest answer is fresh.
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '1.0.0' });

    // A delegation that expired: nothing resolves "latest" any more.
    await b.hub.metadata.setDelegation(delegationDocument(b.hub.metadata.publicKey, await readSecretKeyFile(b.key.key), Date.now(), 1500));
    await new Promise((r) => setTimeout(r, 2000));
    expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'METADATA_EXPIRED' } });
  });

  it('without a delegation a node installs explicit versions only', async () => {
    const b = await makeBench({ certify: false });
    await b.publish({ version: '1.0.0' });
    await b.publishModel({ id: 'plain-model', version: '1.0.0' });
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' } });
    expect((await b.cli(home, ['models', 'pull', 'plain-model'])).result).toMatchObject({ ok: false, error: { code: 'UNTRUSTED_KEY' } });
    expect((await b.cli(home, ['install', 'demo-echo@1.0.0', '--no-start'])).result).toMatchObject({ ok: true, current: '1.0.0' });
    expect((await b.cli(home, ['models', 'pull', 'plain-model@1.0.0'])).result).toMatchObject({ ok: true });
  });
});

describe('key rotation and revocation', () => {
  it('a node that trusts the old key follows a rotation, and refuses a revoked key, also for a download already made', async () => {
    const b = await makeBench();
    const work = await tempDir();
    const next = await makeKey(work, 'next');
    const token = { MODELHUB_ADMIN_TOKEN: 'test-admin-token-0123456789' };
    const rotationFile = path.join(work, 'rotation.json');
    const rotate = await b.cli(work, ['rotate-key', '--old', b.key.key, '--new', next.pub, '--out', rotationFile], token);
    expect(rotate.result).toMatchObject({ ok: true, old_key_id: b.key.keyId, new_key_id: next.keyId, uploaded: true });
    // The statement is minisign-format: the real minisign verifies it with the old public key.
    await run('minisign', ['-V', '-p', b.key.pub, '-m', rotationFile]);

    // The hub accepts releases signed by the new key now; so does a node trusting only the old one.
    const { buildServiceRelease } = await import('../helpers/releases.js');
    const { publishDir } = await import('../../src/admin/publish-client.js');
    const r2 = await buildServiceRelease(b.work, next, { version: '2.0.0', modelBytes: 3 * 1024 * 1024 });
    await publishDir(r2.dir, { hub: b.hub.url, token: token.MODELHUB_ADMIN_TOKEN });
    const home = await b.newHome();
    expect((await b.cli(home, ['install', 'demo-echo', '--no-start'])).result).toMatchObject({ ok: true, version: '2.0.0' });
    const trusted = (await b.cli(home, ['trust', 'list'])).result!.keys as { key_id: string; source: string; rotated_from: string | null; revoked: boolean }[];
    expect(trusted.find((k) => k.key_id === next.keyId)).toMatchObject({ source: 'rotated', rotated_from: b.key.keyId, revoked: false });
    expect(trusted.find((k) => k.key_id === b.key.keyId)).toMatchObject({ source: 'added', revoked: false });

    // A download in flight when the key is revoked is never switched in.
    const other = await b.newHome();
    b.proxy.rate = 1024 * 1024;
    const { spawnCli, waitForLine } = await import('../helpers/cli.js');
    const child = spawnCli(['install', 'demo-echo', '--no-start', '--home', other, '--hub', b.proxy.url, '--json']);
    const result = waitForLine(child, 'result', 120_000);
    const pkg = '/storage/services/demo-echo/2.0.0/linux-x64/service.zip';
    for (let i = 0; (b.proxy.bytes.get(pkg) ?? 0) === 0; i++) {
      if (i > 600) throw new Error('the download never started');
      await new Promise((r) => setTimeout(r, 50));
    }
    const revokeFile = path.join(work, 'revocation.json');
    const revoke = await b.cli(work, ['revoke-key', next.keyId, '--key', b.key.key, '--out', revokeFile, '--reason', 'leaked'], token);
    expect(revoke.result).toMatchObject({ ok: true, key_id: next.keyId, uploaded: true });
    await run('minisign', ['-V', '-p', b.key.pub, '-m', revokeFile]);
    b.proxy.rate = 0;
    expect(await result).toMatchObject({ ok: false, error: { code: 'KEY_REVOKED' } });
    expect(await currentOf(other, 'demo-echo')).toBeNull();

    // And nothing it signed installs any more; trust list says how and by whom.
    const third = await b.newHome();
    expect((await b.cli(third, ['install', 'demo-echo@2.0.0', '--no-start'])).result).toMatchObject({ ok: false, error: { code: 'KEY_REVOKED' } });
    const after = (await b.cli(third, ['trust', 'list'])).result!.keys as { key_id: string; revoked: boolean; revoked_by: string | null }[];
    expect(after.find((k) => k.key_id === next.keyId)).toMatchObject({ revoked: true, revoked_by: b.key.keyId });
    // The hub refuses new uploads signed by the revoked key.
    const r3 = await buildServiceRelease(b.work, next, { version: '3.0.0' });
    await expect(publishDir(r3.dir, { hub: b.hub.url, token: token.MODELHUB_ADMIN_TOKEN })).rejects.toMatchObject({ code: 'UNTRUSTED_KEY' });
    expect(JSON.parse(await readFile(rotationFile, 'utf8'))).toMatchObject({ type: 'modelhub-key-rotation', old_key_id: b.key.keyId, new_key_id: next.keyId });
  });
});
