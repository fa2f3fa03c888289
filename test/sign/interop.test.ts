// Interoperability with the real minisign binary (SPEC §3: both directions).
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  formatPublicKey,
  formatSecretKey,
  generateKeyPair,
  keyIdHex,
  normalizeKeyIdHex,
  parsePublicKey,
  parseSecretKey,
  readPublicKeyFile,
  readSecretKeyFile,
  signFile,
  verifySignature,
  writeKeyPair,
  type PublicKey,
  type VerifyResult,
} from '../../src/sign/index.js';
import { makeTempDir, minisign } from './helpers.js';

let dir = '';
let cleanup: () => Promise<void> = async () => undefined;

beforeAll(async () => {
  ({ dir, cleanup } = await makeTempDir('modelhub-minisign-'));
});

afterAll(async () => {
  await cleanup();
});

async function verifyFile(messagePath: string, sigPath: string, keys: readonly PublicKey[]): Promise<VerifyResult> {
  return verifySignature({
    message: await readFile(messagePath),
    signature: await readFile(sigPath, 'utf8'),
    trustedKeys: keys,
  });
}

async function writeMessage(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** A key pair made by `minisign -G -W` in dir. */
async function minisignKeyPair(name: string): Promise<{ pub: string; key: string; pk: PublicKey; printedId: string }> {
  const pub = join(dir, `${name}.pub`);
  const key = join(dir, `${name}.key`);
  const gen = await minisign(['-G', '-W', '-p', pub, '-s', key], dir);
  expect(gen.code, gen.stderr).toBe(0);
  const pubText = await readFile(pub, 'utf8');
  // minisign 0.11 prints the id without leading zeros, 0.12 with: normalise to 16 digits.
  const printed = /^untrusted comment: minisign public key ([0-9A-F]{1,16})$/m.exec(pubText)?.[1];
  const printedId = normalizeKeyIdHex(printed ?? '');
  expect(printedId).toBeDefined();
  const parsed = parsePublicKey(pubText);
  if (!parsed.ok) throw new Error(parsed.message);
  return { pub, key, pk: parsed.value, printedId: printedId ?? '' };
}

describe('minisign verifies what modelhub signs', () => {
  it('minisign -V accepts our keygen + signFile, and fails on a tampered file', async () => {
    const keys = await writeKeyPair(join(dir, 'ours'));
    const sk = await readSecretKeyFile(keys.secretKeyPath);
    const file = await writeMessage('manifest.json', JSON.stringify({ schema: 1, id: 'nmt', version: '1.1.0' }));
    await writeFile(`${file}.minisig`, await signFile(file, sk));

    const ok = await minisign(['-V', '-p', keys.publicKeyPath, '-m', file], dir);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('Signature and comment signature verified');
    expect(ok.stdout).toMatch(/Trusted comment: timestamp:\d+\tfile:manifest\.json\thashed/);

    // Also with the bare key on the command line (-P).
    const pubLine = (await readFile(keys.publicKeyPath, 'utf8')).split('\n')[1] ?? '';
    expect((await minisign(['-V', '-P', pubLine, '-m', file], dir)).code).toBe(0);

    await writeFile(file, JSON.stringify({ schema: 1, id: 'nmt', version: '9.9.9' }));
    const tampered = await minisign(['-V', '-p', keys.publicKeyPath, '-m', file], dir);
    expect(tampered.code).not.toBe(0);
    expect(tampered.stderr).toContain('Signature verification failed');
  });

  it('minisign -V rejects our signature whose trusted comment was edited', async () => {
    const keys = await writeKeyPair(join(dir, 'ours-tc'));
    const sk = await readSecretKeyFile(keys.secretKeyPath);
    const file = await writeMessage('tc.bin', randomBytes(1000));
    const text = await signFile(file, sk, { trustedComment: 'version:1.0.0' });
    await writeFile(`${file}.minisig`, text.replace('version:1.0.0', 'version:2.0.0'));
    const result = await minisign(['-V', '-p', keys.publicKeyPath, '-m', file], dir);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('Comment signature verification failed');
  });

  it('minisign prints the same key id as keyIdHex when the key does not match', async () => {
    const ours = await writeKeyPair(join(dir, 'id-a'));
    const theirs = await writeKeyPair(join(dir, 'id-b'));
    const file = await writeMessage('id.txt', 'key id check');
    await writeFile(`${file}.minisig`, await signFile(file, await readSecretKeyFile(ours.secretKeyPath)));
    const result = await minisign(['-V', '-p', theirs.publicKeyPath, '-m', file], dir);
    expect(result.code).not.toBe(0);
    const ids = /Signature key id in .* is ([0-9A-F]+)\s+but the key id in the public key is ([0-9A-F]+)/.exec(result.stderr);
    expect(ids, result.stderr).not.toBeNull();
    expect(normalizeKeyIdHex(ids?.[1] ?? '')).toBe(ours.keyId);
    expect(normalizeKeyIdHex(ids?.[2] ?? '')).toBe(theirs.keyId);
  });

  it('a key id with leading zero bytes: minisign names the same key as keyIdHex', async () => {
    // The most significant byte of the little-endian id is the last one; zero it (and the
    // next) so the printed id starts with zeros, which minisign 0.11 leaves out.
    const pair = generateKeyPair();
    const keyId = Uint8Array.from(pair.publicKey.keyId);
    keyId[7] = 0;
    keyId[6] = 0x0a;
    const sk = { ...pair.secretKey, keyId };
    const pubPath = join(dir, 'zero.pub');
    const keyPath = join(dir, 'zero.key');
    await writeFile(pubPath, formatPublicKey({ keyId, key: pair.publicKey.key }));
    await writeFile(keyPath, formatSecretKey(sk));
    expect(keyIdHex(keyId)).toMatch(/^000A[0-9A-F]{12}$/);

    const recreated = join(dir, 'zero-recreated.pub');
    const result = await minisign(['-R', '-s', keyPath, '-p', recreated], dir);
    expect(result.code, result.stderr).toBe(0);
    const printed = /^untrusted comment: minisign public key ([0-9A-F]+)$/m.exec(await readFile(recreated, 'utf8'))?.[1];
    expect(printed === keyIdHex(keyId) || printed === keyIdHex(keyId).replace(/^0+/, '')).toBe(true);
    expect(normalizeKeyIdHex(printed ?? '')).toBe(keyIdHex(keyId));

    const file = await writeMessage('zero.txt', 'zero');
    await writeFile(`${file}.minisig`, await signFile(file, sk));
    expect((await minisign(['-V', '-p', pubPath, '-m', file], dir)).code).toBe(0);
  });

  it('a large file signed while streaming verifies with minisign', async () => {
    const keys = await writeKeyPair(join(dir, 'big'));
    const file = await writeMessage('big.bin', randomBytes(5 * 1024 * 1024 + 3));
    await writeFile(`${file}.minisig`, await signFile(file, await readSecretKeyFile(keys.secretKeyPath)));
    const result = await minisign(['-V', '-p', keys.publicKeyPath, '-m', file], dir);
    expect(result.code, result.stderr).toBe(0);
  });
});

describe('modelhub verifies what minisign signs', () => {
  it('keyIdHex matches the id minisign -G writes into the public key comment', async () => {
    const { pk, printedId } = await minisignKeyPair('idcheck');
    expect(keyIdHex(pk.keyId)).toBe(printedId);
  });

  it('minisign -S (ED, default trusted comment) verifies with our parser of its x.pub', async () => {
    const { key, pk, printedId } = await minisignKeyPair('x');
    const file = await writeMessage('payload.bin', randomBytes(4096));
    const signed = await minisign(['-S', '-s', key, '-m', file], dir);
    expect(signed.code, signed.stderr).toBe(0);
    const result = await verifyFile(file, `${file}.minisig`, [pk]);
    expect(result).toMatchObject({ ok: true, algorithm: 'ED', keyId: printedId });
    if (!result.ok) return;
    expect(result.trustedComment).toMatch(/^timestamp:\d+\tfile:payload\.bin\thashed$/);

    const otherFile = await writeMessage('payload2.bin', randomBytes(4096));
    expect(await verifyFile(otherFile, `${file}.minisig`, [pk])).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it('minisign -S -t (explicit trusted comment) verifies, and an edit of it is caught', async () => {
    const { key, pk } = await minisignKeyPair('xt');
    const file = await writeMessage('tc.json', '{"a":1}');
    const sigPath = join(dir, 'tc.json.sig');
    const signed = await minisign(['-S', '-s', key, '-m', file, '-x', sigPath, '-t', 'id=nmt-m2m100 version=1.1.0 é'], dir);
    expect(signed.code, signed.stderr).toBe(0);
    expect(await verifyFile(file, sigPath, [pk])).toMatchObject({ ok: true, trustedComment: 'id=nmt-m2m100 version=1.1.0 é' });

    const edited = (await readFile(sigPath, 'utf8')).replace('version=1.1.0', 'version=1.1.1');
    const result = verifySignature({ message: await readFile(file), signature: edited, trustedKeys: [pk] });
    expect(result).toMatchObject({ ok: false, reason: 'bad_global_signature' });
  });

  it('minisign -S -l (legacy Ed) verifies with our verifier', async () => {
    const { key, pk } = await minisignKeyPair('legacy');
    const file = await writeMessage('legacy.txt', 'legacy signed content\n');
    const sigPath = join(dir, 'legacy.txt.minisig');
    const signed = await minisign(['-S', '-l', '-s', key, '-m', file, '-x', sigPath], dir);
    expect(signed.code, signed.stderr).toBe(0);
    const sigText = await readFile(sigPath, 'utf8');
    expect(Buffer.from(sigText.split('\n')[1] ?? '', 'base64').subarray(0, 2).toString('latin1')).toBe('Ed');
    const result = await verifyFile(file, sigPath, [pk]);
    expect(result).toMatchObject({ ok: true, algorithm: 'Ed' });
    if (result.ok) expect(result.trustedComment).toMatch(/^timestamp:\d+\tfile:legacy\.txt$/);
  });

  it('a signature by an untrusted minisign key is unknown_key', async () => {
    const signerKeys = await minisignKeyPair('untrusted-signer');
    const trusted = await minisignKeyPair('trusted-other');
    const file = await writeMessage('u.txt', 'u');
    expect((await minisign(['-S', '-s', signerKeys.key, '-m', file], dir)).code).toBe(0);
    expect(await verifyFile(file, `${file}.minisig`, [trusted.pk])).toMatchObject({
      ok: false,
      reason: 'unknown_key',
      keyId: signerKeys.printedId,
    });
  });
});

describe('secret key files are shared both ways', () => {
  it('minisign -S signs with OUR unencrypted secret key; minisign -V and we both verify', async () => {
    const keys = await writeKeyPair(join(dir, 'shared'));
    const file = await writeMessage('shared.txt', 'signed by minisign with a modelhub key');
    // -p makes minisign check that the signature verifies with that public key before writing.
    const signed = await minisign(['-S', '-s', keys.secretKeyPath, '-p', keys.publicKeyPath, '-m', file], dir);
    expect(signed.code, signed.stderr).toBe(0);
    const cli = await minisign(['-V', '-p', keys.publicKeyPath, '-m', file], dir);
    expect(cli.code, cli.stderr).toBe(0);
    const ours = await verifyFile(file, `${file}.minisig`, [await readPublicKeyFile(keys.publicKeyPath)]);
    expect(ours).toMatchObject({ ok: true, algorithm: 'ED', keyId: keys.keyId });
  });

  it('minisign -R recreates exactly our public key file from our secret key', async () => {
    const keys = await writeKeyPair(join(dir, 'recreate'));
    const recreated = join(dir, 'recreated.pub');
    const result = await minisign(['-R', '-s', keys.secretKeyPath, '-p', recreated], dir);
    expect(result.code, result.stderr).toBe(0);
    const theirs = (await readFile(recreated, 'utf8')).split('\n');
    const ours = (await readFile(keys.publicKeyPath, 'utf8')).split('\n');
    expect(theirs[1]).toBe(ours[1]); // the key line, byte for byte
    const printed = /^untrusted comment: minisign public key ([0-9A-F]+)$/.exec(theirs[0] ?? '')?.[1];
    expect(normalizeKeyIdHex(printed ?? '')).toBe(keys.keyId);
  });

  it('we read a minisign -G -W secret key, sign with it, and minisign -V accepts', async () => {
    const { key, pub, printedId } = await minisignKeyPair('theirs');
    const sk = await readSecretKeyFile(key);
    expect(keyIdHex(sk.keyId)).toBe(printedId);
    const file = await writeMessage('theirs.txt', 'signed by modelhub with a minisign key');
    await writeFile(`${file}.minisig`, await signFile(file, sk));
    const result = await minisign(['-V', '-p', pub, '-m', file], dir);
    expect(result.code, result.stderr).toBe(0);
  });

  it('our formatSecretKey of a minisign -W key is byte-identical except for the filled-in checksum', async () => {
    const { key } = await minisignKeyPair('bytes');
    const theirText = await readFile(key, 'utf8');
    const parsed = parseSecretKey(theirText);
    if (!parsed.ok) throw new Error(parsed.message);
    const theirBytes = Buffer.from(theirText.split('\n')[1] ?? '', 'base64');
    const ourBytes = Buffer.from(formatSecretKey(parsed.value).split('\n')[1] ?? '', 'base64');
    expect(ourBytes.length).toBe(theirBytes.length);
    expect(ourBytes.subarray(0, 126)).toEqual(theirBytes.subarray(0, 126));
    expect(theirBytes.subarray(126).every((b) => b === 0)).toBe(true);
  });
});
