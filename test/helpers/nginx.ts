// A real nginx for a test file (nginx-process.ts): stopped by stop() or after the file's tests
// at the latest.
//
// What it serves is chosen by the options, any combination:
// - `root`: a folder served statically below `mount` (default `/`): a mirror of a storage folder;
// - `proxyTo`: every other request is proxied to this URL (a hub);
// - `accelPrefix` + `storage`: an `internal` location at accelPrefix aliasing the storage
//   folder, for the hub's `X-Accel-Redirect` answers;
// - `config`: http-level configuration (server blocks, upstreams) instead, e.g. the shipped
//   deploy/nginx/*.conf, with `{{PORT}}` replaced by the port.
//
// Without nginx installed (Debian: apt-get install nginx, which .ci/run does), `nginx.available`
// is false and the reason is printed once: test files skip with describe.skipIf(!nginx.available).
import { afterAll } from 'vitest';
import { nginxBinary, startNginxProcess, type NginxOptions, type RunningNginx } from './nginx-process.js';

export { deployConfig } from './nginx-process.js';
export type { NginxOptions, RunningNginx } from './nginx-process.js';

const reason = 'reason' in nginxBinary ? nginxBinary.reason : '';
if (reason !== '') console.warn(`nginx tests skipped: ${reason}`);

export const nginx = { available: reason === '', reason };

const running = new Set<RunningNginx>();
afterAll(async () => {
  await Promise.all([...running].map((n) => n.stop()));
});

export async function startNginx(options: NginxOptions): Promise<RunningNginx> {
  const n = await startNginxProcess(options);
  running.add(n);
  return {
    ...n,
    stop: async () => {
      running.delete(n);
      await n.stop();
    },
  };
}
