// Real releases for tests: demo sources → pack → sign, exactly as an admin does it.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeDemoModel, writeDemoService, type DemoServiceOptions } from '../../src/demo/fixtures.js';
import { pack } from '../../src/pack/index.js';
import type { Manifest } from '../../src/schemas/manifest.js';
import { readSecretKeyFile, writeKeyPair } from '../../src/sign/keygen.js';
import { signFile } from '../../src/sign/sign.js';

export interface TestKey {
  base: string;
  pub: string;
  key: string;
  keyId: string;
}

export async function makeKey(dir: string, name = 'publisher'): Promise<TestKey> {
  const base = path.join(dir, name);
  const r = await writeKeyPair(base);
  return { base, pub: r.publicKeyPath, key: r.secretKeyPath, keyId: r.keyId };
}

export async function signManifest(outDir: string, key: TestKey): Promise<void> {
  const manifestPath = path.join(outDir, 'manifest.json');
  const sk = await readSecretKeyFile(key.key);
  await writeFile(manifestPath + '.minisig', await signFile(manifestPath, sk));
}

export interface BuiltRelease {
  dir: string;
  manifest: Manifest;
  manifestText: string;
}

export async function buildServiceRelease(
  work: string,
  key: TestKey,
  o: DemoServiceOptions & { platform?: string },
): Promise<BuiltRelease> {
  const tag = `${o.id ?? 'demo-echo'}-${o.version}-${o.platform ?? 'linux-x64'}-${Math.random().toString(36).slice(2, 8)}`;
  const src = await writeDemoService(path.join(work, 'src', tag), o);
  const out = path.join(work, 'out', tag);
  await pack(src, out, { platform: o.platform ?? 'linux-x64' });
  await signManifest(out, key);
  const manifestText = await readFile(path.join(out, 'manifest.json'), 'utf8');
  return { dir: out, manifestText, manifest: JSON.parse(manifestText) as Manifest };
}

export async function buildModelRelease(
  work: string,
  key: TestKey,
  o: { id?: string; version: string; files?: Record<string, number> },
): Promise<BuiltRelease> {
  const tag = `${o.id ?? 'demo-tiny-nmt'}-${o.version}-${Math.random().toString(36).slice(2, 8)}`;
  const src = await writeDemoModel(path.join(work, 'src', tag), o);
  const out = path.join(work, 'out', tag);
  await pack(src, out);
  await signManifest(out, key);
  const manifestText = await readFile(path.join(out, 'manifest.json'), 'utf8');
  return { dir: out, manifestText, manifest: JSON.parse(manifestText) as Manifest };
}
