// Which installed service runs where: pid, port, version and start time in engine.db, so that
// services outlive the command that started them and `status` can find them again.
//
// A row also holds the supervisor's start time (`start_time`), so that a pid reused by another
// process (after a reboot, say) is never taken for the service: such a row is stale, the service
// counts as not running, nothing is signalled, and the row is deleted. Rows recorded by an older
// version have no start time (NULL) and are checked as before (the pid, and on Linux whether it
// runs a modelhub supervisor).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import type { PlatformAdapter } from '../platform/adapter.js';
import { recordedProcess, startService, stopService, type RunningService } from '../runtime/manager.js';
import type { Platform } from '../schemas/common.js';
import { parseJsonOrThrow } from '../schemas/parse.js';
import { serviceJsonSchema, type ServiceJson } from '../schemas/service.js';
import type { Db } from './db.js';
import type { Home } from './home.js';

export interface RuntimeRow {
  id: string;
  version: string;
  pid: number;
  port: number;
  started_at: number;
  log: string;
  /** The supervisor's start time (PlatformAdapter.processStartTime); NULL in rows of older versions. */
  start_time?: string | null;
}

export class RuntimeRegistry {
  /** @internal engine.db is not part of the public API. */
  constructor(
    private readonly db: Db,
    private readonly home: Home,
    private readonly adapter: PlatformAdapter,
    private readonly platform: Platform,
    private readonly nodeExecutable?: string,
  ) {}

  row(id: string): RuntimeRow | undefined {
    return this.db.prepare('SELECT * FROM runtime WHERE id = ?').get(id) as RuntimeRow | undefined;
  }

  /** The recorded process, if it is still alive (and is still the recorded process: a stale row is deleted). */
  running(id: string): RuntimeRow | undefined {
    const row = this.row(id);
    if (row === undefined) return undefined;
    const state = recordedProcess(row.pid, row.start_time, this.adapter);
    if (state === 'reused') this.forget(row);
    return state === 'running' ? row : undefined;
  }

  /** Deletes `row`, if it is still the recorded one. */
  private forget(row: RuntimeRow): void {
    this.db.prepare('DELETE FROM runtime WHERE id = ? AND pid = ? AND started_at = ?').run(row.id, row.pid, row.started_at);
  }

  all(): RuntimeRow[] {
    return this.db.prepare('SELECT * FROM runtime ORDER BY id').all() as RuntimeRow[];
  }

  async serviceJson(id: string, version: string): Promise<ServiceJson> {
    const file = path.join(this.home.versionDir(id, version), 'service.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ModelhubError('NOT_FOUND', `${id} ${version} is not installed (${file} missing)`, { cause: err });
    }
    return parseJsonOrThrow(serviceJsonSchema, text, 'MANIFEST_INVALID', file);
  }

  async start(id: string, version: string): Promise<RunningService & { service: ServiceJson }> {
    const service = await this.serviceJson(id, version);
    const started = await startService({
      serviceId: id,
      version,
      versionDir: this.home.versionDir(id, version),
      service,
      platform: this.platform,
      logsDir: this.home.logs,
      adapter: this.adapter,
      nodeExecutable: this.nodeExecutable,
    });
    this.db
      .prepare(
        `INSERT INTO runtime (id, version, pid, port, started_at, log, start_time) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, pid = excluded.pid, port = excluded.port, started_at = excluded.started_at, log = excluded.log, start_time = excluded.start_time`,
      )
      .run(id, version, started.pid, started.port, started.startedAt, started.logFile, started.startTime);
    return { ...started, service };
  }

  /** Stops the service if it runs (only if it runs `version`, when given). */
  async stop(id: string, version?: string | null): Promise<boolean> {
    const row = this.row(id);
    if (row === undefined) return false;
    if (version !== undefined && version !== null && row.version !== version) return false;
    const state = recordedProcess(row.pid, row.start_time, this.adapter);
    if (state === 'reused') {
      // The pid now names another process: the service is not running, and that one is not ours.
      this.forget(row);
      return false;
    }
    // Unconditional: a supervisor that died may have left its service group running, and
    // stopService is a no-op when the whole tree is gone.
    const stopped = state === 'running' || this.adapter.isTreeAlive(row.pid);
    await stopService(row.pid, { adapter: this.adapter, startTime: row.start_time ?? null });
    this.forget(row);
    return stopped;
  }
}
