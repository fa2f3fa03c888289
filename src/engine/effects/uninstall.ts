// The uninstall machine's effects.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import type { RemoveInput, RemoveOutput, StopServiceInput } from '../../../machines/uninstall.js';
import { guardedEffect } from '../effect.js';
import type { JobHandle } from '../runner.js';
import { exists, removeDirAtomically } from '../fs-util.js';
import type { EngineContext } from './context.js';
import { removeModelVersions } from './model-remove.js';

export function uninstallEffects(ctx: EngineContext, job: JobHandle) {
  const { home, adapter, runtime, registry } = ctx;
  const effect = guardedEffect(job);
  return {
    stopService: effect<StopServiceInput, { stopped: boolean }>(async ({ id, version, kind }) => {
      if (kind === 'model') return { stopped: false };
      const current = registry.installedState(id).current;
      // Stopping is needed when the whole service goes, or the version being removed runs.
      if (version !== null && version !== current) return { stopped: await runtime.stop(id, version) };
      return { stopped: await runtime.stop(id) };
    }),

    removeVersions: effect<RemoveInput, RemoveOutput>(async ({ id, version, kind }) => {
      if (kind === 'model') return removeModelVersions(ctx, id, version);
      const serviceDir = home.serviceDir(id);
      const state = registry.installedState(id);
      const removed: string[] = [];
      if (version === null) {
        await adapter.removeCurrent(serviceDir);
        const onDisk = (await exists(serviceDir)) ? await readdir(serviceDir) : [];
        for (const name of onDisk) if (semver.valid(name) === name) await removeDirAtomically(path.join(serviceDir, name));
        for (const v of new Set([...state.versions, ...onDisk.filter((n) => semver.valid(n) === n)])) removed.push(v);
        await rm(serviceDir, { recursive: true, force: true });
        return { removed: removed.sort(semver.compare), current: null };
      }
      let current = state.current;
      if (version === state.current) {
        await adapter.removeCurrent(serviceDir);
        current = null;
      }
      await removeDirAtomically(home.versionDir(id, version));
      removed.push(version);
      return { removed, current };
    }),
  };
}
