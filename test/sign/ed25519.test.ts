// The node verifies with node:crypto (src/sign/ed25519.ts) what the admin side signs with
// libsodium: a differential test that both agree, on valid signatures and on damaged ones.
// Inputs are pseudo-random but derived from the case number, so a failure can be replayed.
import { describe, expect, it } from 'vitest';

import { blake2b512, ed25519Verify } from '../../src/sign/ed25519.js';
import { sodium } from '../../src/sign/sodium.js';

const CASES = 200;

/** `length` pseudo-random bytes derived from (label, n). */
function bytesFor(label: string, n: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let block = 0; block * 64 < length; block++) {
    const digest = sodium.crypto_generichash(64, `${label}:${n}:${block}`, null);
    out.set(digest.subarray(0, Math.min(64, length - block * 64)), block * 64);
  }
  return out;
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = bytes.slice();
  copy[bit >> 3] = (copy[bit >> 3] ?? 0) ^ (1 << (bit & 7));
  return copy;
}

/** libsodium's verdict; it throws on wrong lengths, which counts as a rejection. */
function sodiumVerify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return sodium.crypto_sign_verify_detached(signature, message, publicKey);
  } catch {
    return false;
  }
}

interface Case {
  n: number;
  publicKey: Uint8Array;
  message: Uint8Array;
  signature: Uint8Array;
}

/** Lengths 0…300; every fifth is 64, the size of the BLAKE2b-512 prehash `ED` signatures sign. */
function messageLength(n: number): number {
  if (n === 1) return 0;
  if (n % 5 === 0) return 64;
  const [hi = 0, lo = 0] = bytesFor('length', n, 2);
  return (hi * 256 + lo) % 301;
}

function makeCase(n: number): Case {
  const pair = sodium.crypto_sign_seed_keypair(bytesFor('seed', n, 32));
  const message = bytesFor('message', n, messageLength(n));
  return { n, publicKey: pair.publicKey, message, signature: sodium.crypto_sign_detached(message, pair.privateKey) };
}

/** Both verifiers on one input: they must agree, and the expected verdict must hold. */
function agree(what: string, c: Case, signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array, expected: boolean): void {
  const ours = ed25519Verify(signature, message, publicKey);
  const theirs = sodiumVerify(signature, message, publicKey);
  expect({ case: c.n, what, ours, theirs }).toEqual({ case: c.n, what, ours: expected, theirs: expected });
}

describe('ed25519Verify agrees with libsodium crypto_sign_verify_detached', () => {
  const cases = Array.from({ length: CASES }, (_, n) => makeCase(n));

  it(`accepts the valid signature (${CASES} keys and messages)`, () => {
    for (const c of cases) agree('valid', c, c.signature, c.message, c.publicKey, true);
  });

  it('rejects single-bit flips of the signature (R, S and the top bits of S)', () => {
    for (const c of cases) {
      const random = bytesFor('sigbit', c.n, 1)[0] ?? 0; // 0…255: somewhere in R or S
      for (const bit of [0, 255, 256, 511, 510, random, 256 + random]) {
        agree(`signature bit ${bit}`, c, flipBit(c.signature, bit), c.message, c.publicKey, false);
      }
    }
  });

  it('rejects single-bit flips of the message and an extra or missing byte', () => {
    for (const c of cases) {
      if (c.message.length > 0) {
        const bits = c.message.length * 8;
        const [hi = 0, lo = 0] = bytesFor('msgbit', c.n, 2);
        const random = (hi * 256 + lo) % bits;
        for (const bit of [0, bits - 1, random]) {
          agree(`message bit ${bit}`, c, c.signature, flipBit(c.message, bit), c.publicKey, false);
        }
        agree('message minus its last byte', c, c.signature, c.message.subarray(0, -1), c.publicKey, false);
      }
      const longer = new Uint8Array(c.message.length + 1);
      longer.set(c.message);
      agree('message plus a zero byte', c, c.signature, longer, c.publicKey, false);
    }
  });

  it('rejects single-bit flips of the public key (including the sign bit of x)', () => {
    for (const c of cases) {
      const random = bytesFor('pkbit', c.n, 1)[0] ?? 0;
      for (const bit of [0, 254, 255, random]) {
        agree(`public key bit ${bit}`, c, c.signature, c.message, flipBit(c.publicKey, bit), false);
      }
    }
  });

  it('returns false, without throwing, for wrong-length signatures and keys', () => {
    const c = cases[1] as Case;
    const padded = new Uint8Array(65);
    padded.set(c.signature);
    for (const signature of [new Uint8Array(0), c.signature.subarray(0, 63), padded]) {
      expect(() => ed25519Verify(signature, c.message, c.publicKey)).not.toThrow();
      agree(`signature of ${signature.length} bytes`, c, signature, c.message, c.publicKey, false);
    }
    const longKey = new Uint8Array(33);
    longKey.set(c.publicKey);
    for (const publicKey of [new Uint8Array(0), c.publicKey.subarray(0, 31), longKey]) {
      expect(() => ed25519Verify(c.signature, c.message, publicKey)).not.toThrow();
      agree(`public key of ${publicKey.length} bytes`, c, c.signature, c.message, publicKey, false);
    }
  });

  it('reads keys, signatures and messages that are views into larger buffers', () => {
    const c = cases[2] as Case;
    const backing = new Uint8Array(7 + 32 + 64 + c.message.length);
    backing.set(c.publicKey, 7);
    backing.set(c.signature, 39);
    backing.set(c.message, 103);
    const view = (start: number, length: number): Uint8Array => backing.subarray(start, start + length);
    expect(ed25519Verify(view(39, 64), view(103, c.message.length), view(7, 32))).toBe(true);
    expect(ed25519Verify(Buffer.from(c.signature), Buffer.from(c.message), Buffer.from(c.publicKey))).toBe(true);
  });
});

describe('blake2b512 equals libsodium crypto_generichash(64, m)', () => {
  it('for lengths 0 to 64 KiB + 3, across BLAKE2b block boundaries', () => {
    for (const length of [0, 1, 3, 63, 64, 65, 127, 128, 129, 255, 256, 1000, 4096, 65_539]) {
      const message = bytesFor('blake', length, length);
      const ours = blake2b512(message);
      expect(ours).toBeInstanceOf(Uint8Array);
      expect({ length, digest: Buffer.from(ours).toString('hex') }).toEqual({
        length,
        digest: Buffer.from(sodium.crypto_generichash(64, message, null)).toString('hex'),
      });
    }
  });
});
