// Content-Disposition of a model file (RFC 6266): its base name used to go into
// `filename="…"` as it was, so a quote or a semicolon in a file name rewrote the header. Now a
// plain ASCII name is sent as it is, and any other gets an ASCII fallback with nothing that
// ends or escapes the quoted-string, plus the exact name in `filename*=UTF-8''…` (RFC 8187).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/server.js';
import { contentDisposition } from '../../hub/serve-file.js';
import { publishDir } from '../../src/admin/publish-client.js';
import { startHub, TEST_TOKEN } from '../helpers/hub.js';
import { buildModelRelease, makeKey, type BuiltRelease } from '../helpers/releases.js';
import { tempDir } from '../helpers/tmp.js';

/** The whole header, strictly: a quoted ASCII fallback, then optionally an RFC 8187 ext-value. */
const GRAMMAR = /^attachment; filename="([^"\\\x00-\x1f\x7f-\uffff]*)"(?:; filename\*=UTF-8''([A-Za-z0-9!#$&+\-.^_`|~%]+))?$/;

const TRICKY = [
  'weights "v2"; size=big.bin',
  'modèle-日本語.bin',
  `100% it's (final)*.bin`,
  'a\u00a0b — “smart” quotes.bin',
  'emoji-🙂.bin',
  'semi;colon,comma=equals.bin',
  '%41%42.bin',
];

/** What a client following RFC 6266 takes as the file name: filename* when present, else filename. */
function parsed(header: string): { fallback: string; exact: string | undefined } {
  const m = GRAMMAR.exec(header);
  expect(m, `not a well-formed Content-Disposition: ${header}`).not.toBeNull();
  return { fallback: m![1]!, exact: m![2] === undefined ? undefined : decodeURIComponent(m![2]) };
}

let hub: Hub;
let rel: BuiltRelease;

beforeAll(async () => {
  const work = await tempDir();
  const key = await makeKey(work);
  hub = await startHub(work, [key]);
  const files: Record<string, number> = { 'config.json': 0 };
  for (const name of TRICKY) files[`weights/${name}`] = 100;
  rel = await buildModelRelease(work, key, { id: 'tricky-names', version: '1.0.0', files });
  await publishDir(rel.dir, { hub: hub.url, token: TEST_TOKEN });
});

describe('Content-Disposition of model files', () => {
  for (const name of TRICKY) {
    it(`${JSON.stringify(name)}: one well-formed header that names the file exactly`, async () => {
      const url = `${hub.url}/storage/models/tricky-names/1.0.0/weights/${encodeURIComponent(name)}`;
      for (const method of ['GET', 'HEAD']) {
        const res = await fetch(url, { method });
        expect(res.status, method).toBe(200);
        const header = res.headers.get('content-disposition') ?? '';
        expect(header).not.toMatch(/[\r\n]/);
        const { fallback, exact } = parsed(header);
        expect(exact, header).toBe(name);
        expect(fallback).toMatch(/^[\x20-\x7e]*$/);
        expect(fallback).not.toMatch(/["\\;%]/);
        expect(fallback).toHaveLength([...name].length);
        if (method === 'GET') expect(Buffer.from(await res.arrayBuffer()).equals(await readFile(path.join(rel.dir, 'weights', name)))).toBe(true);
      }
    });
  }

  it('a plain ASCII name is sent as it is, without filename*', async () => {
    const res = await fetch(`${hub.url}/storage/models/tricky-names/1.0.0/config.json`);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="config.json"');
    expect(contentDisposition('demo-echo-1.0.0+build.7.zip')).toBe('attachment; filename="demo-echo-1.0.0+build.7.zip"');
  });

  it('the encoder alone: quotes, backslashes and non-ASCII never reach the quoted fallback', () => {
    expect(contentDisposition('a"b\\c.bin')).toBe(`attachment; filename="a_b_c.bin"; filename*=UTF-8''a%22b%5Cc.bin`);
    expect(contentDisposition('é.bin')).toBe(`attachment; filename="_.bin"; filename*=UTF-8''%C3%A9.bin`);
    expect(contentDisposition("it's.bin")).toBe(`attachment; filename="it's.bin"`);
  });
});
