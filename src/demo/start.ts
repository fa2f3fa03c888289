// `npm start`: the product on one machine. A demo hub on 127.0.0.1 with demo releases published
// through the real admin flow (keygen → pack → sign → publish over HTTP), a demo node home that
// trusts the demo key, and the service-management page over that node. The first URL printed
// is the page. Ctrl-C stops the page, the hub and every service the demo started.
import { randomBytes } from 'node:crypto';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createHub } from '../../hub/server.js';
import { publishDir } from '../admin/publish-client.js';
import { Engine } from '../engine/engine.js';
import { delegationDocument } from '../metadata/statements.js';
import { ModelhubError } from '../errors.js';
import { pack } from '../pack/index.js';
import { platformNameOf } from '../platform/name.js';
import { readPublicKeyFile, readSecretKeyFile, writeKeyPair } from '../sign/keygen.js';
import { signFile } from '../sign/sign.js';
import { startUiServer } from '../ui/server.js';
import { writeDemoModel, writeDemoService } from './fixtures.js';

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

function portFrom(value: string | undefined, fallback: number): number {
  const n = Number(value ?? fallback);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ModelhubError('INVALID_REQUEST', `not a TCP port: ${value}`);
  return n;
}

async function main(): Promise<void> {
  const dataDir = path.resolve(process.env.MODELHUB_DEMO_DIR ?? '.modelhub-demo');
  const hubPort = portFrom(process.env.PORT, 8780);
  // PORT=0 (tests, or "any free port") applies to the page too.
  const uiPort = portFrom(process.env.MODELHUB_UI_PORT, hubPort === 0 ? 0 : 8790);
  const token = process.env.MODELHUB_ADMIN_TOKEN ?? randomBytes(16).toString('hex');
  await mkdir(dataDir, { recursive: true });

  const keyBase = path.join(dataDir, 'demo-publisher');
  if (!(await exists(`${keyBase}.key`))) await writeKeyPair(keyBase);
  const secretKey = await readSecretKeyFile(`${keyBase}.key`);
  const publicKey = await readPublicKeyFile(`${keyBase}.pub`);

  const hub = await createHub({ storage: path.join(dataDir, 'storage'), port: hubPort, host: '127.0.0.1', publisherKeys: [publicKey], adminToken: token });
  // The demo publisher certifies the hub's metadata key (what `modelhub certify-hub-key` does),
  // so the demo node resolves "latest" from the hub's signed snapshot.
  await hub.metadata.setDelegation(delegationDocument(hub.metadata.publicKey, secretKey, Date.now(), 365 * 86_400_000));

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

  // The node: its own home, trusting the demo publisher, driven through the page.
  const nodeHome = path.join(dataDir, 'node');
  const engine = new Engine({ home: nodeHome, hub: hub.url });
  await engine.trust.add(`${keyBase}.pub`);
  await engine.recover();
  const ui = await startUiServer({ engine, port: uiPort, warn: (m) => process.stderr.write(`warning: ${m}\n`) });

  console.log('');
  console.log(`modelhub page: ${ui.url}/  (install the demo services from here)`);
  console.log(`Model Hub demo serving at ${hub.url}`);
  console.log(`  catalog:      ${hub.url}/api/services   API: ${hub.url}/api/openapi.json`);
  console.log(`  admin token:  ${token}`);
  console.log(`  publisher key ${keyBase}.pub  (trusted by the demo node in ${nodeHome})`);
  console.log(`  CLI:          npx modelhub list --home ${nodeHome} --hub ${hub.url}`);
  console.log('Ctrl-C stops the page, the hub and the services the demo started.');

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      await ui.close();
      await engine.shutdown();
      for (const s of engine.list().services) {
        if (s.running) await engine.stop(s.id).catch((err: unknown) => process.stderr.write(`warning: could not stop ${s.id}: ${String(err)}\n`));
      }
      engine.close();
      await hub.close();
      process.exit(0);
    })();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await main();
