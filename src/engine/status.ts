// `status`: each installed service's recorded process, whether it lives (the recorded process,
// not another one that reused its pid) and answers its health check. Read-only, so the CLI can
// run it on a database it opened read-only.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServiceStatusValue } from '../client/types.js';
import { probeHealth } from '../runtime/manager.js';
import { serviceJsonSchema } from '../schemas/service.js';
import type { Home } from './home.js';
import type { Registry } from './registry.js';

async function healthCheckOf(home: Home, id: string, version: string) {
  try {
    const parsed = serviceJsonSchema.safeParse(JSON.parse(await readFile(path.join(home.versionDir(id, version), 'service.json'), 'utf8')));
    return parsed.success ? parsed.data.health_check : undefined;
  } catch {
    return undefined;
  }
}

export async function serviceStatuses(view: { registry: Registry; home: Home }, id?: string): Promise<ServiceStatusValue[]> {
  const out: ServiceStatusValue[] = [];
  for (const s of view.registry.installedServices()) {
    if (id !== undefined && s.id !== id) continue;
    // Alive and still the recorded process: a pid reused by another process is not the service.
    const rt = view.registry.liveRuntimeOf(s.id);
    const alive = rt !== undefined;
    const healthy = alive && (await probeHealth(rt.port, await healthCheckOf(view.home, s.id, rt.version)));
    out.push({ id: s.id, version: alive ? rt.version : s.current, pid: alive ? rt.pid : null, port: alive ? rt.port : null, running: alive, healthy });
  }
  return out;
}
