// `npm start`: a hub on 127.0.0.1 with demo releases published through the real admin flow
// (keygen → pack → sign → publish over HTTP), then it keeps serving.
import { randomBytes } from 'node:crypto';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createHub } from '../../hub/server.js';
import { publishDir } from '../admin/publish-client.js';
import { ModelhubError } from '../errors.js';
import { pack } from '../pack/index.js';
import { platformNameOf } from '../platform/name.js';
import { readPublicKeyFile, readSecretKeyFile, writeKeyPair } from '../sign/keygen.js';
import { signFile } from '../sign/sign.js';
import { writeDemoModel, writeDemoService } from './fixtures.js';

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function main(): Promise<void> {
  const dataDir = path.resolve(process.env.MODELHUB_DEMO_DIR ?? '.modelhub-demo');
  const port = Number(process.env.PORT ?? 8780);
  const token = process.env.MODELHUB_ADMIN_TOKEN ?? randomBytes(16).toString('hex');
  await mkdir(dataDir, { recursive: true });

  const keyBase = path.join(dataDir, 'demo-publisher');
  if (!(await exists(`${keyBase}.key`))) await writeKeyPair(keyBase);
  const publicKey = await readPublicKeyFile(`${keyBase}.pub`);
  const secretKey = await readSecretKeyFile(`${keyBase}.key`);

  const hub = await createHub({ storage: path.join(dataDir, 'storage'), port, host: '127.0.0.1', publisherKeys: [publicKey], adminToken: token });

  const platform = platformNameOf(process.platform, process.arch) ?? 'linux-x64';
  const releases: { src: string; out: string; platform?: string; stable?: boolean }[] = [];
  for (const version of ['1.0.0', '1.1.0']) {
    const src = await writeDemoService(path.join(dataDir, 'src', `demo-echo-${version}`), { version });
    releases.push({ src, out: path.join(dataDir, 'out', `demo-echo-${version}-${platform}`), platform, stable: version === '1.0.0' });
  }
  const modelSrc = await writeDemoModel(path.join(dataDir, 'src', 'demo-tiny-nmt-1.0.0'), { version: '1.0.0' });
  releases.push({ src: modelSrc, out: path.join(dataDir, 'out', 'demo-tiny-nmt-1.0.0'), stable: true });

  for (const r of releases) {
    const packed = await pack(r.src, r.out, { platform: r.platform });
    await writeFile(packed.manifestPath + '.minisig', await signFile(packed.manifestPath, secretKey));
    try {
      const p = await publishDir(r.out, { hub: hub.url, token, stable: r.stable });
      console.log(`published ${p.kind} ${p.id} ${p.version}${p.platform ? ` (${p.platform})` : ''}`);
    } catch (err) {
      if (!(err instanceof ModelhubError && err.code === 'ALREADY_EXISTS')) throw err;
      console.log(`already published: ${packed.id} ${packed.version}`);
    }
  }

  console.log('');
  console.log(`Model Hub demo serving at ${hub.url}`);
  console.log(`  catalog:      ${hub.url}/api/services`);
  console.log(`  admin token:  ${token}`);
  console.log(`  publisher key ${keyBase}.pub  (trust it on a node: modelhub trust add ${keyBase}.pub)`);
  console.log(`  data:         ${dataDir}`);

  const stop = (): void => {
    void hub.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await main();
