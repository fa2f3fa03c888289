// `npm start` on a fresh data directory prints a URL that answers, with the demo releases.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

describe('npm start', () => {
  it('serves a hub with the demo services and model published', async () => {
    const dir = await tempDir();
    const child = spawn(process.execPath, [path.join(REPO, 'dist', 'src', 'demo', 'start.js')], {
      env: { ...process.env, PORT: '0', MODELHUB_DEMO_DIR: path.join(dir, 'demo') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 30_000);
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /serving at (http:\/\/\S+)/.exec(out);
          if (m?.[1] !== undefined) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      const services = (await (await fetch(`${url}/api/services`)).json()) as { service_id: string; versions: { version: string }[] }[];
      expect(services.map((s) => s.service_id)).toEqual(['demo-echo']);
      expect(services[0]!.versions.map((v) => v.version)).toEqual(['1.1.0', '1.0.0']);
      const models = (await (await fetch(`${url}/api/models`)).json()) as { id: string; versions: { files: unknown[] }[] }[];
      expect(models[0]!.id).toBe('demo-tiny-nmt');
      expect(models[0]!.versions[0]!.files.length).toBeGreaterThan(1);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
