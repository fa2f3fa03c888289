import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ModelhubError } from '../../src/errors.js';
import {
  blake2b512,
  blake2b512File,
  formatPublicKey,
  formatSecretKey,
  formatSignature,
  generateKeyPair,
  keyIdHex,
  parsePublicKey,
  parseSecretKey,
  parseSignature,
  publicKeyOf,
  readPublicKeyFile,
  readSecretKeyFile,
  signBytes,
  signFile,
  signPrehashed,
  verifySignature,
  writeKeyPair,
} from '../../src/sign/index.js';
import { makeTempDir } from './helpers.js';

let dir = '';
let cleanup: () => Promise<void> = async () => undefined;

beforeAll(async () => {
  ({ dir, cleanup } = await makeTempDir());
});

afterAll(async () => {
  await cleanup();
});

async function rejection(promise: Promise<unknown>): Promise<ModelhubError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ModelhubError);
    return err as ModelhubError;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): ModelhubError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ModelhubError);
    return err as ModelhubError;
  }
  throw new Error('expected a throw');
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

describe('blake2b512', () => {
  it('matches the BLAKE2b-512 reference vectors', () => {
    expect(hex(blake2b512(new Uint8Array(0)))).toBe(
      '786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce',
    );
    expect(hex(blake2b512(new TextEncoder().encode('abc')))).toBe(
      'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
    );
  });

  it('hashes a multi-chunk file while streaming, equal to hashing it in memory', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const path = join(dir, 'big.bin');
    await writeFile(path, data);
    expect(hex(await blake2b512File(path))).toBe(hex(blake2b512(data)));
    const empty = join(dir, 'empty.bin');
    await writeFile(empty, '');
    expect(hex(await blake2b512File(empty))).toBe(hex(blake2b512(new Uint8Array(0))));
  });

  it('reports a missing file as NOT_FOUND and a directory as INVALID_REQUEST', async () => {
    expect((await rejection(blake2b512File(join(dir, 'nope')))).code).toBe('NOT_FOUND');
    expect((await rejection(blake2b512File(dir))).code).toBe('INVALID_REQUEST');
  });
});

describe('signing', () => {
  const { secretKey, publicKey } = generateKeyPair();

  it('signFile writes an ED signature with minisign-style default trusted comment', async () => {
    const path = join(dir, 'manifest.json');
    await writeFile(path, '{"schema":1}\n');
    const before = Math.floor(Date.now() / 1000);
    const text = await signFile(path, secretKey);
    const after = Math.floor(Date.now() / 1000);
    const sig = parseSignature(text);
    if (!sig.ok) throw new Error(sig.message);
    expect(sig.value.algorithm).toBe('ED');
    expect(sig.value.untrustedComment).toBe('signature from modelhub secret key');
    const match = /^timestamp:(\d+)\tfile:manifest\.json\thashed$/.exec(sig.value.trustedComment);
    expect(match).not.toBeNull();
    const ts = Number(match?.[1]);
    expect(ts).toBeGreaterThanOrEqual(before);
    expect(ts).toBeLessThanOrEqual(after);
    const message = await readFile(path);
    expect(verifySignature({ message, signature: text, trustedKeys: [publicKey] })).toMatchObject({ ok: true });
  });

  it('signFile takes an explicit trusted comment', async () => {
    const path = join(dir, 'x.txt');
    await writeFile(path, 'x');
    const text = await signFile(path, secretKey, { trustedComment: 'id=nmt version=1.1.0' });
    expect(text.split('\n')[2]).toBe('trusted comment: id=nmt version=1.1.0');
  });

  it('signPrehashed over blake2b512 equals signBytes (Ed25519 is deterministic)', () => {
    const data = new TextEncoder().encode('data');
    expect(signPrehashed(blake2b512(data), secretKey, 'c')).toEqual(signBytes(data, secretKey, 'c'));
  });

  it('signBytes defaults to a timestamped, hashed trusted comment', () => {
    expect(signBytes(new Uint8Array(1), secretKey).trustedComment).toMatch(/^timestamp:\d+\thashed$/);
  });

  it('rejects trusted comments with line breaks or NUL as INVALID_REQUEST', async () => {
    for (const comment of ['a\nb', 'a\rb', 'trailing\n', 'nul\0']) {
      expect(thrown(() => signBytes(new Uint8Array(1), secretKey, comment)).code).toBe('INVALID_REQUEST');
      expect(thrown(() => signPrehashed(new Uint8Array(64), secretKey, comment)).code).toBe('INVALID_REQUEST');
      const path = join(dir, 'x.txt');
      expect((await rejection(signFile(path, secretKey, { trustedComment: comment }))).code).toBe('INVALID_REQUEST');
    }
  });

  it('rejects a trusted comment longer than minisign accepts', () => {
    expect(() => signBytes(new Uint8Array(1), secretKey, 'x'.repeat(8173))).not.toThrow();
    expect(thrown(() => signBytes(new Uint8Array(1), secretKey, 'x'.repeat(8174))).code).toBe('INVALID_REQUEST');
  });

  it('rejects a prehash that is not 64 bytes', () => {
    expect(thrown(() => signPrehashed(new Uint8Array(32), secretKey, 'c')).message).toMatch(/64-byte/);
  });

  it('signFile of a missing file is NOT_FOUND', async () => {
    expect((await rejection(signFile(join(dir, 'missing'), secretKey))).code).toBe('NOT_FOUND');
  });
});

describe('key generation', () => {
  it('generateKeyPair gives consistent sizes and random key ids', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    expect(a.publicKey.keyId).toHaveLength(8);
    expect(a.publicKey.key).toHaveLength(32);
    expect(a.secretKey.secretKey).toHaveLength(64);
    expect(a.secretKey.secretKey.subarray(32)).toEqual(a.publicKey.key);
    expect(a.secretKey.publicKey).toEqual(a.publicKey.key);
    expect(a.secretKey.keyId).toEqual(a.publicKey.keyId);
    expect(publicKeyOf(a.secretKey)).toEqual(a.publicKey);
    expect(keyIdHex(a.publicKey.keyId)).not.toBe(keyIdHex(b.publicKey.keyId));
    expect(a.publicKey.key).not.toEqual(b.publicKey.key);
  });

  it('writeKeyPair writes BASE.pub (0644) and BASE.key (0600) that parse back as one pair', async () => {
    const keyDir = join(dir, 'keys1');
    await mkdir(keyDir);
    const base = join(keyDir, 'publisher');
    const result = await writeKeyPair(base);
    expect(result.publicKeyPath).toBe(`${base}.pub`);
    expect(result.secretKeyPath).toBe(`${base}.key`);
    expect(result.keyId).toMatch(/^[0-9A-F]{16}$/);
    if (process.platform !== 'win32') {
      expect((await stat(result.publicKeyPath)).mode & 0o777).toBe(0o644);
      expect((await stat(result.secretKeyPath)).mode & 0o777).toBe(0o600);
    }
    expect((await readdir(keyDir)).sort()).toEqual(['publisher.key', 'publisher.pub']); // no temp files left
    const pubText = await readFile(result.publicKeyPath, 'utf8');
    expect(pubText.split('\n')[0]).toBe(`untrusted comment: minisign public key ${result.keyId}`);
    const pk = await readPublicKeyFile(result.publicKeyPath);
    const sk = await readSecretKeyFile(result.secretKeyPath);
    expect(keyIdHex(pk.keyId)).toBe(result.keyId);
    expect(sk.keyId).toEqual(pk.keyId);
    expect(sk.publicKey).toEqual(pk.key);
    const data = new TextEncoder().encode('payload');
    const sig = signBytes(data, sk, 'c');
    expect(verifySignature({ message: data, signature: formatSignature(sig), trustedKeys: [pk] })).toMatchObject({
      ok: true,
      keyId: result.keyId,
    });
  });

  it('creates a missing parent directory', async () => {
    const base = join(dir, 'nested', 'deeper', 'k');
    const result = await writeKeyPair(base);
    expect((await stat(result.secretKeyPath)).isFile()).toBe(true);
  });

  it('refuses to overwrite either file without force, and leaves everything as it was', async () => {
    const keyDir = join(dir, 'keys2');
    await mkdir(keyDir);
    const base = join(keyDir, 'k');
    const first = await writeKeyPair(base);
    const pubBefore = await readFile(first.publicKeyPath, 'utf8');
    const keyBefore = await readFile(first.secretKeyPath, 'utf8');
    const err = await rejection(writeKeyPair(base));
    expect(err.code).toBe('ALREADY_EXISTS');
    expect(err.message).toContain(base);
    expect(await readFile(first.publicKeyPath, 'utf8')).toBe(pubBefore);
    expect(await readFile(first.secretKeyPath, 'utf8')).toBe(keyBefore);

    // Only the public key exists: still refused, and no secret key appears.
    const lone = join(keyDir, 'lone');
    await writeFile(`${lone}.pub`, 'something');
    expect((await rejection(writeKeyPair(lone))).code).toBe('ALREADY_EXISTS');
    expect((await readdir(keyDir)).sort()).toEqual(['k.key', 'k.pub', 'lone.pub']);
  });

  it('overwrites with force', async () => {
    const base = join(dir, 'keys3', 'k');
    const first = await writeKeyPair(base);
    const second = await writeKeyPair(base, { force: true });
    expect(second.keyId).not.toBe(first.keyId);
    expect(keyIdHex((await readPublicKeyFile(second.publicKeyPath)).keyId)).toBe(second.keyId);
    expect(keyIdHex((await readSecretKeyFile(second.secretKeyPath)).keyId)).toBe(second.keyId);
    if (process.platform !== 'win32') {
      expect((await stat(second.secretKeyPath)).mode & 0o777).toBe(0o600);
    }
  });
});

describe('reading key files', () => {
  it('reads a bare base64 public key file', async () => {
    const { publicKey } = generateKeyPair();
    const path = join(dir, 'bare.pub');
    await writeFile(path, `${formatPublicKey(publicKey).split('\n')[1] ?? ''}\n`);
    expect(await readPublicKeyFile(path)).toEqual(publicKey);
  });

  it('names the file and the reason for malformed content (INVALID_REQUEST)', async () => {
    const path = join(dir, 'bad.pub');
    await writeFile(path, 'untrusted comment: x\nnot-base64!\n');
    const err = await rejection(readPublicKeyFile(path));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toBe(`${path}: public key: the key line is not valid base64`);
    expect(err.details).toMatchObject({ path, reason: 'malformed' });
  });

  it('refuses an encrypted secret key with the documented message', async () => {
    const { secretKey } = generateKeyPair();
    const [comment, b64] = formatSecretKey(secretKey).split('\n') as [string, string];
    const bytes = Buffer.from(b64, 'base64');
    bytes.write('Sc', 2, 'latin1');
    const path = join(dir, 'encrypted.key');
    await writeFile(path, `${comment}\n${bytes.toString('base64')}\n`);
    const err = await rejection(readSecretKeyFile(path));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toBe(
      `${path}: encrypted secret keys are not supported; create one with minisign -G -W or modelhub keygen`,
    );
  });

  it('refuses a public key where a secret key is expected, and vice versa', async () => {
    const { publicKey, secretKey } = generateKeyPair();
    const pubPath = join(dir, 'swap.pub');
    const keyPath = join(dir, 'swap.key');
    await writeFile(pubPath, formatPublicKey(publicKey));
    await writeFile(keyPath, formatSecretKey(secretKey));
    expect((await rejection(readSecretKeyFile(pubPath))).message).toMatch(/decodes to 42 bytes, expected 158/);
    expect((await rejection(readPublicKeyFile(keyPath))).message).toMatch(/decodes to 158 bytes, expected 42/);
    expect(parsePublicKey(formatPublicKey(publicKey)).ok).toBe(true);
    expect(parseSecretKey(formatSecretKey(secretKey)).ok).toBe(true);
  });

  it('missing file is NOT_FOUND; an oversized file is INVALID_REQUEST', async () => {
    expect((await rejection(readPublicKeyFile(join(dir, 'absent.pub')))).code).toBe('NOT_FOUND');
    const big = join(dir, 'big.pub');
    await writeFile(big, 'x'.repeat(100_000));
    const err = await rejection(readPublicKeyFile(big));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toMatch(/too large/);
  });
});
