// Key ids are chosen by whoever makes the key, so a different key may carry the id of one the
// node trusts. `trust add` used to replace the trusted key silently; now it refuses with
// KEY_ID_CONFLICT and keeps the trusted one, while adding the very same key again is fine.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readPublicKeyFile } from '../../src/sign/keygen.js';
import { formatPublicKey } from '../../src/sign/minisign-format.js';
import { TrustStore } from '../../src/trust/store.js';
import { runCli } from '../helpers/cli.js';
import { makeKey, type TestKey } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

let trusted: TestKey;
/** Another key's Ed25519 public key under the trusted key's id. */
let impostor: string;
let impostorText: string;

beforeAll(async () => {
  const work = await tempDir();
  trusted = await makeKey(work, 'publisher');
  const other = await makeKey(work, 'other');
  const t = await readPublicKeyFile(trusted.pub);
  const o = await readPublicKeyFile(other.pub);
  impostorText = formatPublicKey({ keyId: t.keyId, key: o.key });
  impostor = path.join(work, 'impostor.pub');
  await writeFile(impostor, impostorText);
  expect((await readPublicKeyFile(impostor)).keyId).toEqual(t.keyId);
});

describe('trust add', () => {
  it('refuses a different key with a trusted key id (KEY_ID_CONFLICT), keeps the trusted key, accepts the same key again', async () => {
    const home = path.join(await tempDir('modelhub-node-'), 'home');
    const first = await runCli(['trust', 'add', trusted.pub, '--home', home, '--json']);
    expect(first.result, first.stderr).toMatchObject({ ok: true, key_id: trusted.keyId });
    const stored = await readFile(path.join(home, 'trust', `${trusted.keyId}.pub`), 'utf8');

    const again = await runCli(['trust', 'add', trusted.pub, '--home', home, '--json']);
    expect(again.code).toBe(0);
    expect(again.result).toMatchObject({ ok: true, key_id: trusted.keyId });

    const conflict = await runCli(['trust', 'add', impostor, '--home', home, '--json']);
    expect(conflict.code).toBe(1);
    expect(conflict.result).toMatchObject({ ok: false, error: { code: 'KEY_ID_CONFLICT' } });
    expect(String((conflict.result!.error as { message: string }).message)).toContain(trusted.keyId);

    // The trusted key is untouched, and still the only one.
    expect(await readFile(path.join(home, 'trust', `${trusted.keyId}.pub`), 'utf8')).toBe(stored);
    const list = await runCli(['trust', 'list', '--home', home, '--json']);
    expect(list.result).toMatchObject({ ok: true });
    expect((list.result!.keys as { key_id: string }[]).map((k) => k.key_id)).toEqual([trusted.keyId]);
    const store = new TrustStore(path.join(home, 'trust'));
    expect((await store.list()).map((k) => k.public_key)).toEqual([stored]);

    // The key given as text (an app's configuration) is refused the same way.
    await expect(store.addKey(impostorText)).rejects.toMatchObject({ code: 'KEY_ID_CONFLICT' });
    await expect(store.addKey(stored)).resolves.toMatchObject({ key_id: trusted.keyId });

    // Replacing is an explicit act: remove, then add.
    expect((await runCli(['trust', 'remove', trusted.keyId, '--home', home, '--json'])).result).toMatchObject({ ok: true });
    const replaced = await runCli(['trust', 'add', impostor, '--home', home, '--json']);
    expect(replaced.result).toMatchObject({ ok: true, key_id: trusted.keyId });
    expect(await readFile(path.join(home, 'trust', `${trusted.keyId}.pub`), 'utf8')).toBe(impostorText);
  });
});
