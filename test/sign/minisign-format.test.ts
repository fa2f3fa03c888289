import { describe, expect, it } from 'vitest';

import { ModelhubError } from '../../src/errors.js';
import {
  decodeSignature,
  formatPublicKey,
  formatSecretKey,
  formatSignature,
  generateKeyPair,
  keyIdHex,
  normalizeKeyIdHex,
  parsePublicKey,
  parseSecretKey,
  parseSignature,
  publicKeyBase64,
  signBytes,
  type ParseResult,
} from '../../src/sign/index.js';
import { editBase64, flipByte, withLine } from './helpers.js';

function messageOf<T>(result: ParseResult<T>): string {
  expect(result.ok).toBe(false);
  if (result.ok) throw new Error('expected a failure');
  expect(result.reason).toBe('malformed');
  return result.message;
}

function valueOf<T>(result: ParseResult<T>): T {
  if (!result.ok) throw new Error(`expected success, got: ${result.message}`);
  return result.value;
}

const pair = generateKeyPair();
const pubText = formatPublicKey(pair.publicKey);
const secText = formatSecretKey(pair.secretKey);
const sigText = formatSignature(signBytes(new TextEncoder().encode('hello'), pair.secretKey, 'trusted text'));

/** The base64 line of a two-line key file with its decoded bytes edited. */
function editKeyLine(text: string, edit: (bytes: Uint8Array) => void): string {
  return withLine(text, 1, (line) => editBase64(line, edit));
}

function setAscii(offset: number, value: string): (bytes: Uint8Array) => void {
  return (bytes) => {
    bytes.set(
      [...value].map((c) => c.charCodeAt(0)),
      offset,
    );
  };
}

describe('keyIdHex', () => {
  it('prints the 8 bytes as a little-endian uint64 in uppercase hex, as minisign does', () => {
    const id = Uint8Array.from([0x8c, 0x3d, 0x53, 0x7f, 0xf2, 0xc7, 0x3f, 0x7b]);
    expect(keyIdHex(id)).toBe('7B3FC7F27F533D8C');
    expect(keyIdHex(Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0]))).toBe('0000000000000001');
  });

  it('normalizeKeyIdHex accepts the unpadded ids minisign 0.11 prints, in any case', () => {
    expect(normalizeKeyIdHex('5357D0D5DA878B3')).toBe('05357D0D5DA878B3');
    expect(normalizeKeyIdHex(' 7b3fc7f27f533d8c ')).toBe('7B3FC7F27F533D8C');
    expect(normalizeKeyIdHex('')).toBeUndefined();
    expect(normalizeKeyIdHex('7B3FC7F27F533D8C0')).toBeUndefined();
    expect(normalizeKeyIdHex('XYZ')).toBeUndefined();
  });

  it('refuses a key id that is not 8 bytes', () => {
    expect(() => keyIdHex(new Uint8Array(7))).toThrow(ModelhubError);
  });
});

describe('public keys', () => {
  it('round-trips the two-line file and names the key id in the comment', () => {
    expect(pubText).toMatch(/^untrusted comment: minisign public key [0-9A-F]{16}\n[A-Za-z0-9+/]{56}\n$/);
    expect(pubText).toContain(keyIdHex(pair.publicKey.keyId));
    const parsed = valueOf(parsePublicKey(pubText));
    expect(parsed.keyId).toEqual(pair.publicKey.keyId);
    expect(parsed.key).toEqual(pair.publicKey.key);
  });

  it('accepts the bare base64 line (minisign -P), CRLF line ends and a BOM', () => {
    const bare = publicKeyBase64(pair.publicKey);
    expect(valueOf(parsePublicKey(bare)).key).toEqual(pair.publicKey.key);
    expect(valueOf(parsePublicKey(`  ${bare}  \n`)).keyId).toEqual(pair.publicKey.keyId);
    expect(valueOf(parsePublicKey(pubText.replace(/\n/g, '\r\n'))).key).toEqual(pair.publicKey.key);
    expect(valueOf(parsePublicKey(`\uFEFF${pubText}`)).key).toEqual(pair.publicKey.key);
  });

  it('gives a distinct message for each kind of damage', () => {
    const [comment, b64] = pubText.split('\n') as [string, string];
    const cases: Record<string, string> = {
      empty: '',
      commentOnly: `${comment}\n`,
      noCommentPrefix: `comment: x\n${b64}\n`,
      secondLineComment: `${comment}\n${comment}\n`,
      extraContent: `${pubText}junk\n`,
      badBase64: `${comment}\n${b64.slice(0, -2)}!!\n`,
      wrongLength: `${comment}\n${Buffer.alloc(41).toString('base64')}\n`,
      wrongAlgorithm: editKeyLine(pubText, setAscii(0, 'ED')),
      longComment: `untrusted comment: ${'x'.repeat(1100)}\n${b64}\n`,
    };
    const messages = Object.entries(cases).map(([name, text]) => [name, messageOf(parsePublicKey(text))] as const);
    expect(new Set(messages.map(([, m]) => m)).size).toBe(messages.length);
    const byName = Object.fromEntries(messages);
    expect(byName['empty']).toMatch(/empty/);
    expect(byName['commentOnly']).toMatch(/missing/);
    expect(byName['noCommentPrefix']).toMatch(/first line must start with "untrusted comment: "/);
    expect(byName['secondLineComment']).toMatch(/line 2 must be the base64 key/);
    expect(byName['badBase64']).toMatch(/not valid base64/);
    expect(byName['wrongLength']).toMatch(/decodes to 41 bytes, expected 42/);
    expect(byName['wrongAlgorithm']).toMatch(/unsupported signature algorithm "ED"/);
  });

  it('refuses to format keys of the wrong size', () => {
    expect(() => formatPublicKey({ keyId: new Uint8Array(8), key: new Uint8Array(31) })).toThrow(/32 bytes/);
  });
});

describe('secret keys', () => {
  it('round-trips the unencrypted form with a valid checksum', () => {
    expect(secText).toMatch(/^untrusted comment: .*\n[A-Za-z0-9+/]+={0,2}\n$/);
    const parsed = valueOf(parseSecretKey(secText));
    expect(parsed.keyId).toEqual(pair.secretKey.keyId);
    expect(parsed.secretKey).toEqual(pair.secretKey.secretKey);
    expect(parsed.publicKey).toEqual(pair.publicKey.key);
    const bytes = Buffer.from(secText.split('\n')[1] ?? '', 'base64');
    expect(bytes.length).toBe(158);
    expect(bytes.subarray(0, 6).toString('latin1')).toBe('Ed\0\0B2');
    expect(bytes.subarray(6, 54).every((b) => b === 0)).toBe(true); // salt and limits unused
    expect(bytes.subarray(126).some((b) => b !== 0)).toBe(true); // checksum filled in
  });

  it('accepts the all-zero checksum that minisign -G -W writes', () => {
    const zeroed = editKeyLine(secText, (b) => b.fill(0, 126));
    expect(valueOf(parseSecretKey(zeroed)).secretKey).toEqual(pair.secretKey.secretKey);
  });

  it('refuses an encrypted key with the documented message', () => {
    const encrypted = editKeyLine(secText, setAscii(2, 'Sc'));
    expect(messageOf(parseSecretKey(encrypted))).toBe(
      'encrypted secret keys are not supported; create one with minisign -G -W or modelhub keygen',
    );
  });

  it('gives a distinct message for each kind of damage', () => {
    const [comment, b64] = secText.split('\n') as [string, string];
    const cases: Record<string, string> = {
      empty: '',
      noComment: `${b64}\n`,
      commentOnly: `${comment}\n`,
      secondLineComment: `${comment}\n${comment}\n`,
      extraContent: `${secText}more\n`,
      badBase64: `${comment}\n${b64.replace(/.$/, '*')}\n`,
      wrongLength: `${comment}\n${Buffer.alloc(157).toString('base64')}\n`,
      wrongSigAlg: editKeyLine(secText, setAscii(0, 'XX')),
      wrongChkAlg: editKeyLine(secText, setAscii(4, 'B3')),
      wrongKdf: editKeyLine(secText, setAscii(2, 'Ar')),
      badChecksum: editKeyLine(secText, flipByte(140)),
      corruptedKey: editKeyLine(editKeyLine(secText, flipByte(70)), (b) => b.fill(0, 126)),
    };
    const messages = Object.entries(cases).map(([name, text]) => [name, messageOf(parseSecretKey(text))] as const);
    expect(new Set(messages.map(([, m]) => m)).size).toBe(messages.length);
    const byName = Object.fromEntries(messages);
    expect(byName['badChecksum']).toMatch(/checksum mismatch/);
    expect(byName['corruptedKey']).toMatch(/public half does not match the seed/);
    expect(byName['wrongKdf']).toMatch(/unsupported key derivation function "Ar"/);
    expect(byName['wrongChkAlg']).toMatch(/unsupported checksum algorithm "B3"/);
    expect(byName['wrongLength']).toMatch(/decodes to 157 bytes, expected 158/);
  });

  it('a flipped key byte is caught by the checksum', () => {
    expect(messageOf(parseSecretKey(editKeyLine(secText, flipByte(60))))).toMatch(/checksum mismatch/);
  });

  it('refuses to format an inconsistent key', () => {
    const bad = { ...pair.secretKey, publicKey: new Uint8Array(32) };
    expect(() => formatSecretKey(bad)).toThrow(/public half/);
  });
});

describe('signatures', () => {
  it('formats four lines with a trailing newline and parses them back', () => {
    const all = sigText.split('\n');
    expect(all).toHaveLength(5);
    expect(all[0]).toBe('untrusted comment: signature from modelhub secret key');
    expect(all[2]).toBe('trusted comment: trusted text');
    expect(all[4]).toBe('');
    const parsed = valueOf(parseSignature(sigText));
    expect(parsed.algorithm).toBe('ED');
    expect(parsed.keyId).toEqual(pair.secretKey.keyId);
    expect(parsed.trustedComment).toBe('trusted text');
    expect(parsed.untrustedComment).toBe('signature from modelhub secret key');
    expect(parsed.signature).toHaveLength(64);
    expect(parsed.globalSignature).toHaveLength(64);
    expect(formatSignature(parsed)).toBe(sigText);
  });

  it('keeps empty and unicode trusted comments exact', () => {
    for (const comment of ['', 'é 漢字 \t tab', ' leading and trailing ']) {
      const text = formatSignature({ ...valueOf(parseSignature(sigText)), trustedComment: comment });
      expect(valueOf(parseSignature(text)).trustedComment).toBe(comment);
      expect(valueOf(parseSignature(text.replace(/\n/g, '\r\n'))).trustedComment).toBe(comment);
    }
  });

  it('gives a distinct message for each kind of damage', () => {
    const [c1, s, c2, g] = sigText.split('\n') as [string, string, string, string];
    const cases: Record<string, string> = {
      empty: '\n\n',
      noUntrustedPrefix: `comment: x\n${s}\n${c2}\n${g}\n`,
      trustedFirst: `${c2}\n${s}\n${c1}\n${g}\n`,
      truncated: `${c1}\n${s}\n${c2}\n`,
      extraLine: `${sigText}extra\n`,
      sigLineIsComment: `${c1}\n${c1}\n${c2}\n${g}\n`,
      noTrustedPrefix: `${c1}\n${s}\ncomment: x\n${g}\n`,
      sigBadBase64: `${c1}\n${s.slice(1)}\n${c2}\n${g}\n`,
      sigWrongLength: `${c1}\n${Buffer.alloc(73).toString('base64')}\n${c2}\n${g}\n`,
      globalBadBase64: `${c1}\n${s}\n${c2}\n#${g.slice(1)}\n`,
      globalWrongLength: `${c1}\n${s}\n${c2}\n${Buffer.alloc(63).toString('base64')}\n`,
      unknownAlgorithm: withLine(sigText, 1, (line) => editBase64(line, setAscii(0, 'EX'))),
      tooLongTrustedComment: `${c1}\n${s}\ntrusted comment: ${'x'.repeat(9000)}\n${g}\n`,
      carriageReturnInComment: `${c1}\n${s}\ntrusted comment: a\rb\n${g}\n`,
    };
    const messages = Object.entries(cases).map(([name, text]) => [name, messageOf(parseSignature(text))] as const);
    expect(new Set(messages.map(([, m]) => m)).size).toBe(messages.length);
    const byName = Object.fromEntries(messages);
    expect(byName['truncated']).toMatch(/truncated, expected 4 lines .* found 3/);
    expect(byName['noTrustedPrefix']).toMatch(/line 3 must start with "trusted comment: "/);
    expect(byName['sigWrongLength']).toMatch(/decodes to 73 bytes, expected 74/);
    expect(byName['globalWrongLength']).toMatch(/decodes to 63 bytes, expected 64/);
    expect(byName['unknownAlgorithm']).toMatch(/unsupported signature algorithm "EX"/);
  });

  it('requires the exact prefixes, with their space', () => {
    const [c1, s, , g] = sigText.split('\n') as [string, string, string, string];
    expect(messageOf(parseSignature(`${c1}\n${s}\ntrusted comment:x\n${g}\n`))).toMatch(/line 3 must start/);
    expect(messageOf(parseSignature(`untrusted comment:x\n${s}\ntrusted comment: x\n${g}\n`))).toMatch(/line 1 must start/);
  });

  it('refuses non-canonical base64 (unused bits set)', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const g = sigText.split('\n')[3] ?? '';
    expect(g.endsWith('==')).toBe(true); // 64 bytes: 4 unused bits in the last character
    const last = g.at(-3) ?? 'A';
    const tweaked = `${g.slice(0, -3)}${alphabet[alphabet.indexOf(last) ^ 1] ?? 'A'}==`;
    expect(Buffer.from(tweaked, 'base64')).toEqual(Buffer.from(g, 'base64'));
    expect(messageOf(parseSignature(withLine(sigText, 3, () => tweaked)))).toMatch(/global signature line .* not valid base64/);
  });

  it('decodeSignature keeps an unknown algorithm apart from malformed input', () => {
    const text = withLine(sigText, 1, (line) => editBase64(line, setAscii(0, 'XD')));
    const decoded = decodeSignature(text);
    expect(decoded).toMatchObject({ ok: false, reason: 'unsupported_algorithm' });
    expect(parseSignature(text)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(decodeSignature('garbage')).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('formatSignature refuses line breaks in either comment', () => {
    const sig = valueOf(parseSignature(sigText));
    expect(() => formatSignature({ ...sig, trustedComment: 'a\nb' })).toThrow(ModelhubError);
    expect(() => formatSignature({ ...sig, untrustedComment: 'a\rb' })).toThrow(/line breaks/);
    try {
      formatSignature({ ...sig, trustedComment: 'a\nb' });
    } catch (err) {
      expect(err).toBeInstanceOf(ModelhubError);
      expect((err as ModelhubError).code).toBe('INVALID_REQUEST');
    }
  });
});
