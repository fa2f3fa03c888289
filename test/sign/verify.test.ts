import { describe, expect, it } from 'vitest';

import { ModelhubError } from '../../src/errors.js';
import {
  blake2b512,
  formatSignature,
  generateKeyPair,
  keyIdHex,
  signBytes,
  signBytesLegacy,
  verifyOrThrow,
  verifySignature,
  type PublicKey,
  type VerifyInput,
  type VerifyResult,
} from '../../src/sign/index.js';
import { editBase64, flipByte, withLine } from './helpers.js';

const encoder = new TextEncoder();
const message = encoder.encode('{"schema":1,"kind":"service","id":"nmt-m2m100","version":"1.1.0"}\n');
const signer = generateKeyPair();
const other = generateKeyPair();
const signerId = keyIdHex(signer.publicKey.keyId);
const signedED = formatSignature(signBytes(message, signer.secretKey, 'timestamp:1\tfile:manifest.json\thashed'));
const signedEd = formatSignature(signBytesLegacy(message, signer.secretKey, 'timestamp:1\tfile:manifest.json'));

function verify(signature: string, overrides: Partial<VerifyInput> = {}): VerifyResult {
  return verifySignature({ message, signature, trustedKeys: [signer.publicKey], ...overrides });
}

function failure(result: VerifyResult): { reason: string; message: string; keyId?: string } {
  if (result.ok) throw new Error('expected the verification to fail');
  expect(result.message.length).toBeGreaterThan(10);
  return result;
}

describe('verifySignature: round trips', () => {
  it('accepts an ED signature and reports key id, algorithm and trusted comment', () => {
    expect(verify(signedED)).toEqual({
      ok: true,
      keyId: signerId,
      algorithm: 'ED',
      trustedComment: 'timestamp:1\tfile:manifest.json\thashed',
    });
  });

  it('accepts an ED signature given only the BLAKE2b-512 prehash', () => {
    expect(verify(signedED, { message: { blake2b512: blake2b512(message) } })).toMatchObject({ ok: true, algorithm: 'ED' });
  });

  it('accepts a legacy Ed signature over the raw message', () => {
    expect(verify(signedEd)).toEqual({
      ok: true,
      keyId: signerId,
      algorithm: 'Ed',
      trustedComment: 'timestamp:1\tfile:manifest.json',
    });
  });

  it('picks the signing key among several trusted keys', () => {
    const third = generateKeyPair();
    const result = verify(signedED, { trustedKeys: [other.publicKey, signer.publicKey, third.publicKey] });
    expect(result).toMatchObject({ ok: true, keyId: signerId });
  });

  it('ignores the untrusted comment, which nothing signs', () => {
    const edited = withLine(signedED, 0, () => 'untrusted comment: anything at all');
    expect(verify(edited).ok).toBe(true);
  });

  it('accepts an empty message and an empty trusted comment', () => {
    const empty = new Uint8Array(0);
    const sig = formatSignature(signBytes(empty, signer.secretKey, ''));
    expect(verify(sig, { message: empty })).toMatchObject({ ok: true, trustedComment: '' });
  });
});

describe('verifySignature: each failure has its own reason', () => {
  it('unknown_key when the key id is not trusted, before any cryptography', () => {
    const result = failure(verify(signedED, { trustedKeys: [other.publicKey] }));
    expect(result.reason).toBe('unknown_key');
    expect(result.keyId).toBe(signerId);
    expect(result.message).toContain(signerId);
    expect(failure(verify(signedED, { trustedKeys: [] })).reason).toBe('unknown_key');
  });

  it('unknown_key when the key id in the signature was changed', () => {
    const edited = withLine(signedED, 1, (line) => editBase64(line, flipByte(2)));
    expect(failure(verify(edited)).reason).toBe('unknown_key');
  });

  it('bad_signature when a trusted key id is claimed by another key', () => {
    const impostor: PublicKey = { keyId: signer.publicKey.keyId, key: other.publicKey.key };
    const result = failure(verify(signedED, { trustedKeys: [impostor] }));
    expect(result.reason).toBe('bad_signature');
    expect(result.keyId).toBe(signerId);
  });

  it('bad_signature when a signature byte is flipped', () => {
    for (const index of [10, 40, 73]) {
      const edited = withLine(signedED, 1, (line) => editBase64(line, flipByte(index)));
      expect(failure(verify(edited)).reason).toBe('bad_signature');
    }
  });

  it('bad_signature when the message changed (ED and Ed, one byte and one appended byte)', () => {
    const changed = Uint8Array.from(message);
    changed[5] = (changed[5] ?? 0) ^ 0x20;
    const longer = new Uint8Array([...message, 0x0a]);
    for (const sig of [signedED, signedEd]) {
      expect(failure(verify(sig, { message: changed })).reason).toBe('bad_signature');
      expect(failure(verify(sig, { message: longer })).reason).toBe('bad_signature');
    }
    expect(failure(verify(signedED, { message: { blake2b512: blake2b512(changed) } })).reason).toBe('bad_signature');
  });

  it('bad_signature for a legacy Ed signature when only the prehash is given', () => {
    const result = failure(verify(signedEd, { message: { blake2b512: blake2b512(message) } }));
    expect(result.reason).toBe('bad_signature');
    expect(result.message).toMatch(/legacy "Ed".*raw message/);
  });

  it('bad_signature when the algorithm is switched between ED and Ed', () => {
    const toLegacy = withLine(signedED, 1, (line) => editBase64(line, (b) => b.set([0x45, 0x64], 0)));
    const toHashed = withLine(signedEd, 1, (line) => editBase64(line, (b) => b.set([0x45, 0x44], 0)));
    expect(failure(verify(toLegacy)).reason).toBe('bad_signature');
    expect(failure(verify(toHashed)).reason).toBe('bad_signature');
  });

  it('bad_global_signature when the trusted comment was altered', () => {
    for (const sig of [signedED, signedEd]) {
      const edited = withLine(sig, 2, (line) => line.replace('manifest.json', 'manifest.jsoN'));
      const result = failure(verify(edited));
      expect(result.reason).toBe('bad_global_signature');
      expect(result.keyId).toBe(signerId);
      const appended = withLine(sig, 2, (line) => `${line} `);
      expect(failure(verify(appended)).reason).toBe('bad_global_signature');
    }
  });

  it('bad_global_signature when the global signature was altered', () => {
    const edited = withLine(signedED, 3, (line) => editBase64(line, flipByte(0)));
    expect(failure(verify(edited)).reason).toBe('bad_global_signature');
  });

  it('bad_global_signature when the trusted comment of another file, signed by the same key, is spliced in', () => {
    // The global signature covers the file's own signature, so a comment (with its global
    // signature) cannot be moved from one file's .minisig to another's.
    const otherSig = formatSignature(signBytes(encoder.encode('other file'), signer.secretKey, 'timestamp:2\tfile:other.json\thashed'));
    const spliced = withLine(withLine(signedED, 2, () => otherSig.split('\n')[2] ?? ''), 3, () => otherSig.split('\n')[3] ?? '');
    expect(failure(verify(spliced)).reason).toBe('bad_global_signature');
  });

  it('unsupported_algorithm for unknown algorithm bytes', () => {
    for (const alg of ['EX', 'ed', '\0\0']) {
      const edited = withLine(signedED, 1, (line) =>
        editBase64(line, (b) => b.set([alg.charCodeAt(0), alg.charCodeAt(1)], 0)),
      );
      const result = failure(verify(edited));
      expect(result.reason).toBe('unsupported_algorithm');
    }
  });

  it('malformed for garbage, truncated files, wrong lengths and bad prehashes', () => {
    const [c1, s, c2, g] = signedED.split('\n') as [string, string, string, string];
    const cases = [
      '',
      'not a signature',
      '\u0000\u0001binary',
      `${c1}\n${s}\n${c2}\n`,
      `${c1}\n${s}\n`,
      `${c1}\n${s.slice(0, 40)}\n${c2}\n${g}\n`,
      `${c1}\n${s}\n${c2}\n${g.slice(0, 40)}\n`,
      `${c1}\n${Buffer.alloc(75).toString('base64')}\n${c2}\n${g}\n`,
      `${c1}\n${s}\n${c2}\n${Buffer.alloc(65).toString('base64')}\n`,
      `${c1}\n${s}\n${c2.replace('trusted comment: ', 'trusted comment ')}\n${g}\n`,
      `${c1}\n%%%%\n${c2}\n${g}\n`,
    ];
    const messages = new Set<string>();
    for (const text of cases) {
      const result = failure(verify(text));
      expect(result.reason).toBe('malformed');
      messages.add(result.message);
    }
    expect(messages.size).toBeGreaterThanOrEqual(8);
    const shortPrehash = failure(verify(signedED, { message: { blake2b512: new Uint8Array(32) } }));
    expect(shortPrehash.reason).toBe('malformed');
    expect(shortPrehash.message).toMatch(/64-byte BLAKE2b-512/);
  });

  it('malformed (never a pass) when the trusted key list is broken', () => {
    const broken = { keyId: new Uint8Array(8), key: new Uint8Array(5) };
    const result = failure(verify(signedED, { trustedKeys: [signer.publicKey, broken] }));
    expect(result.reason).toBe('malformed');
    expect(result.message).toMatch(/trusted key #1/);
  });

  it('never throws, even for inputs outside the types', () => {
    const weird = { message: null, signature: 42, trustedKeys: [] } as unknown as VerifyInput;
    expect(verifySignature(weird)).toMatchObject({ ok: false, reason: 'malformed' });
    const noMessage = { message: undefined, signature: signedED, trustedKeys: [signer.publicKey] } as unknown as VerifyInput;
    expect(verifySignature(noMessage)).toMatchObject({ ok: false });
  });
});

describe('verifyOrThrow', () => {
  it('returns the key id and trusted comment on success', () => {
    expect(verifyOrThrow({ message, signature: signedED, trustedKeys: [signer.publicKey] })).toEqual({
      keyId: signerId,
      trustedComment: 'timestamp:1\tfile:manifest.json\thashed',
    });
  });

  function thrown(input: VerifyInput): ModelhubError {
    try {
      verifyOrThrow(input);
    } catch (err) {
      expect(err).toBeInstanceOf(ModelhubError);
      return err as ModelhubError;
    }
    throw new Error('expected verifyOrThrow to throw');
  }

  it('maps unknown_key to UNTRUSTED_KEY', () => {
    const err = thrown({ message, signature: signedED, trustedKeys: [other.publicKey] });
    expect(err.code).toBe('UNTRUSTED_KEY');
    expect(err.message).toMatch(/^unknown_key: /);
    expect(err.details).toEqual({ reason: 'unknown_key', keyId: signerId });
  });

  it('maps every other reason to SIGNATURE_INVALID with the reason in the message', () => {
    const tamperedComment = withLine(signedED, 2, (line) => `${line}!`);
    const tamperedSig = withLine(signedED, 1, (line) => editBase64(line, flipByte(30)));
    const cases: [string, string][] = [
      [tamperedComment, 'bad_global_signature'],
      [tamperedSig, 'bad_signature'],
      ['garbage', 'malformed'],
      [withLine(signedED, 1, (line) => editBase64(line, (b) => b.set([0x41, 0x41], 0))), 'unsupported_algorithm'],
    ];
    for (const [signature, reason] of cases) {
      const err = thrown({ message, signature, trustedKeys: [signer.publicKey] });
      expect(err.code).toBe('SIGNATURE_INVALID');
      expect(err.message.startsWith(`${reason}: `)).toBe(true);
      expect(err.details['reason']).toBe(reason);
    }
  });
});
