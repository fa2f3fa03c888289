// Crash in every state: every path through each machine is enumerated from its graph
// (xstate/graph); for each prefix, the persisted snapshot is round-tripped through JSON,
// restored as the engine restores it, told RESTORED, and driven on. The end state must be the
// one the restart table promises: resume/redo states finish the path, roll_back states end
// rolled back, and a restart loop never finishes normally.
import { createActor, type AnyStateMachine, type AnyMachineSnapshot, type EventObject } from 'xstate';
import { getSimplePaths } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import { installMachine, type InstallInput, type ResolvedRelease } from '../../machines/install.js';
import { modelPullMachine } from '../../machines/model-pull.js';
import { rebuildMachine, type RebuildInput } from '../../machines/rebuild.js';
import { repairMachine, type RepairInput } from '../../machines/repair.js';
import { INSTALL_RESTART_TABLE, MAX_RESTORES, MODEL_PULL_RESTART_TABLE, REBUILD_RESTART_TABLE, REPAIR_RESTART_TABLE, UNINSTALL_RESTART_TABLE, type RestartRule } from '../../machines/restart-table.js';
import { uninstallMachine } from '../../machines/uninstall.js';

const done = (id: string, output: unknown): EventObject => ({ type: `xstate.done.actor.${id}`, output, actorId: id }) as EventObject;
const fail = (id: string, code: string): EventObject => ({ type: `xstate.error.actor.${id}`, error: { code, message: `${code} in ${id}`, retryable: false }, actorId: id }) as EventObject;

const release = (current: string | null, running: boolean): ResolvedRelease => ({
  version: '1.1.0',
  manifestText: '{}',
  signatureText: 'sig',
  archiveUrl: 'http://hub/x.zip',
  installed: { current, versions: current === null ? [] : [current], running },
});
const sha = 'a'.repeat(64);

const installEvents: Record<string, EventObject[]> = {
  resolving: [done('resolveRelease', release('1.0.0', true)), done('resolveRelease', release('1.1.0', true)), fail('resolveRelease', 'NOT_FOUND'), { type: 'CANCEL' }, { type: 'PAUSE' }],
  verifying_manifest: [done('verifyManifest', { keyId: 'K', archive: { url: 'u', sha256: sha, size: 10 }, healthBudgetMs: 1000 }), fail('verifyManifest', 'SIGNATURE_INVALID'), { type: 'CANCEL' }, { type: 'PAUSE' }],
  downloading: [done('downloadArchive', { path: '/d/x.zip', size: 10, sha256: sha, bytesFetched: 10, resumedFrom: 0 }), fail('downloadArchive', 'CHECKSUM_MISMATCH'), { type: 'CANCEL' }, { type: 'PAUSE' }],
  paused: [{ type: 'RESUME' }, { type: 'CANCEL' }],
  verifying_archive: [done('verifyArchive', { path: '/d/x.zip', size: 10, sha256: sha, bytesFetched: 10, resumedFrom: 0 }), fail('verifyArchive', 'CHECKSUM_MISMATCH')],
  staging: [done('stageRelease', { stagingDir: '/s', files: 1, bytes: 10 }), fail('stageRelease', 'UNSAFE_ARCHIVE')],
  switching: [done('switchVersion', { current: '1.1.0', previous: '1.0.0' }), fail('switchVersion', 'INTERNAL')],
  stopping_old: [done('stopOldVersion', { stopped: true }), fail('stopOldVersion', 'INTERNAL')],
  starting: [done('startService', { pid: 10, port: 20, startedAt: 0 }), fail('startService', 'START_FAILED')],
  health_checking: [done('checkHealth', { checks: 3, elapsedMs: 30 }), fail('checkHealth', 'HEALTH_CHECK_FAILED')],
  committing: [done('commitRelease', { removed: [] }), fail('commitRelease', 'INTERNAL')],
  cleaning_up: [done('cleanUp', { removed: [] }), fail('cleanUp', 'INTERNAL')],
  rolling_back: [done('rollBack', { current: '1.0.0', restarted: true }), fail('rollBack', 'INTERNAL')],
};

const uninstallEvents: Record<string, EventObject[]> = {
  stopping: [done('stopService', { stopped: true }), fail('stopService', 'INTERNAL')],
  removing: [done('removeVersions', { removed: ['1.0.0'], current: null }), fail('removeVersions', 'INTERNAL')],
};

const modelEvents: Record<string, EventObject[]> = {
  resolving: [
    done('resolveModel', { version: '1.0.0', manifestText: '{}', signatureText: 's', installedVersions: [] }),
    done('resolveModel', { version: '1.0.0', manifestText: '{}', signatureText: 's', installedVersions: ['1.0.0'] }),
    fail('resolveModel', 'NOT_FOUND'),
    { type: 'CANCEL' },
    { type: 'PAUSE' },
  ],
  verifying_manifest: [done('verifyModelManifest', { keyId: 'K', totalBytes: 5, files: [{ path: 'a', size: 5, sha256: sha, url: 'u' }] }), fail('verifyModelManifest', 'UNTRUSTED_KEY'), { type: 'CANCEL' }, { type: 'PAUSE' }],
  downloading: [done('downloadModelFiles', { stagingDir: '/s' }), fail('downloadModelFiles', 'CHECKSUM_MISMATCH'), { type: 'CANCEL' }, { type: 'PAUSE' }],
  paused: [{ type: 'RESUME' }, { type: 'CANCEL' }],
  installing: [done('installModel', { path: '/m/1.0.0' }), fail('installModel', 'INTERNAL')],
  cleaning_up: [done('cleanUpModel', { removed: [] }), fail('cleanUpModel', 'INTERNAL')],
};

const verdict = (version: string, status: 'intact' | 'quarantined' | 'unproven') => ({ kind: 'service', id: 's', version, status, manifestText: status === 'intact' ? '{}' : null, keyId: null, problem: null, modified: [], missing: [], quarantinedTo: null });
const rebuildEvents: Record<string, EventObject[]> = {
  scanning: [
    done('scanVersions', { candidates: [{ kind: 'service', id: 's', version: '1.0.0' }, { kind: 'model', id: 'm', version: '2.0.0' }] }),
    done('scanVersions', { candidates: [] }),
    fail('scanVersions', 'INTERNAL'),
  ],
  // Two folders: the first verdict goes round the loop, the second leaves it.
  verifying: [done('verifyVersion', verdict('1.0.0', 'intact')), done('verifyVersion', verdict('2.0.0', 'quarantined')), fail('verifyVersion', 'INTERNAL')],
  restoring_pointers: [done('restorePointers', { services: [{ id: 's', current: '1.0.0', previous: null, repaired: null }] }), fail('restorePointers', 'INTERNAL')],
};

const damagedFile = { path: 'app/a.py', sha256: sha, size: 5 };
const checked = (damaged: unknown[], writeProof: boolean) => ({ damaged, manifestText: '{}', signatureText: 's', writeProof, pointerBroken: false });
const repairEvents: Record<string, EventObject[]> = {
  checking: [done('checkVersion', checked([damagedFile], false)), done('checkVersion', checked([], true)), done('checkVersion', checked([], false)), fail('checkVersion', 'SIGNATURE_INVALID')],
  fetching: [done('fetchDamaged', { contentDir: '/d/repair-j', bytesFetched: 5, method: 'range', fallback: null }), fail('fetchDamaged', 'NETWORK_ERROR')],
  replacing: [done('replaceFiles', { repaired: ['app/a.py'], proofWritten: false, pointerRepaired: false }), fail('replaceFiles', 'INSUFFICIENT_DISK')],
  cleaning_up: [done('cleanUpRepair', { removed: [] }), fail('cleanUpRepair', 'INTERNAL')],
};

/** What finishes a rollback (or a clean-up after a restart loop) in each machine. */
const FINISHERS: Record<string, Record<string, EventObject>> = {
  install: { rolling_back: installEvents.rolling_back![0]!, cleaning_up: installEvents.cleaning_up![0]! },
  uninstall: {},
  model_pull: { cleaning_up: modelEvents.cleaning_up![0]! },
  rebuild: {},
  repair: { cleaning_up: repairEvents.cleaning_up![0]! },
};

interface Case {
  name: string;
  machine: AnyStateMachine;
  input: unknown;
  events: Record<string, EventObject[]>;
  table: Record<string, RestartRule>;
  /** States this input never reaches (no start → no start or health check). */
  skip?: string[];
}

const cases: Case[] = [
  { name: 'install (start)', machine: installMachine, input: { jobId: 'j', request: { id: 's', version: '1.1.0', platform: 'linux-x64', allowDowngrade: false, start: true } } satisfies InstallInput, events: installEvents, table: INSTALL_RESTART_TABLE },
  { name: 'install (--no-start)', machine: installMachine, input: { jobId: 'j', request: { id: 's', version: null, platform: 'linux-x64', allowDowngrade: false, start: false } } satisfies InstallInput, events: installEvents, table: INSTALL_RESTART_TABLE, skip: ['stopping_old', 'starting', 'health_checking'] },
  { name: 'uninstall', machine: uninstallMachine, input: { jobId: 'j', request: { id: 's', version: null } }, events: uninstallEvents, table: UNINSTALL_RESTART_TABLE },
  { name: 'model_pull', machine: modelPullMachine, input: { jobId: 'j', request: { id: 'm', version: null } }, events: modelEvents, table: MODEL_PULL_RESTART_TABLE },
  { name: 'rebuild', machine: rebuildMachine, input: { jobId: 'j', reason: 'corrupt', keptAs: '/h/engine.db.corrupt-x', detectedAt: 0 } satisfies RebuildInput, events: rebuildEvents, table: REBUILD_RESTART_TABLE },
  { name: 'repair', machine: repairMachine, input: { jobId: 'j', subject: 'service', id: 's', version: '1.0.0' } satisfies RepairInput, events: repairEvents, table: REPAIR_RESTART_TABLE },
];

function valueOf(s: AnyMachineSnapshot): string {
  return typeof s.value === 'string' ? s.value : JSON.stringify(s.value);
}

/** Start fresh, apply `events`, persist, JSON round trip, restore like the engine does. */
function crashAfter(machine: AnyStateMachine, input: unknown, events: EventObject[]) {
  const live = createActor(machine, { input }).start();
  for (const e of events) live.send(e);
  const persisted = JSON.parse(JSON.stringify(live.getPersistedSnapshot())) as AnyMachineSnapshot;
  const state = valueOf(live.getSnapshot());
  const context = JSON.parse(JSON.stringify(live.getSnapshot().context)) as unknown;
  live.stop();
  const restored = createActor(machine, { snapshot: persisted }).start();
  return { state, context, restored };
}

for (const c of cases) {
  describe(`crash in every state: ${c.name}`, () => {
    const paths = getSimplePaths(c.machine, {
      input: c.input,
      events: (s: AnyMachineSnapshot) => c.events[valueOf(s)] ?? [],
    });
    const machineId = c.machine.id;
    const finishers = FINISHERS[machineId] ?? {};

    it('has a restart rule for every non-final state, and only for those', () => {
      const states = Object.entries(c.machine.root.states);
      for (const [key, node] of states) {
        if (node.type === 'final') expect(c.table[key]).toBeUndefined();
        else expect(c.table[key], key).toBeDefined();
        if (node.type !== 'final') expect((node.meta as { restart?: string } | undefined)?.restart).toBe(c.table[key]);
      }
    });

    it('enumerates paths to every final state', () => {
      const finals = new Set(paths.map((p) => valueOf(p.state)).filter((v) => c.machine.root.states[v]?.type === 'final'));
      const expected = Object.entries(c.machine.root.states).filter(([, n]) => n.type === 'final').map(([k]) => k);
      expect([...finals].sort()).toEqual(expected.sort());
    });

    const finalPaths = paths.filter((p) => p.state.status === 'done');
    for (const p of finalPaths) {
      const events: EventObject[] = p.steps.map((s): EventObject => s.event as EventObject).filter((e) => e.type !== 'xstate.init');
      const end = valueOf(p.state);
      it(`${events.map((e) => e.type.replace('xstate.', '').replace('.actor.', ':')).join(' → ')} ⇒ ${end}`, () => {
        for (let k = 0; k < events.length; k++) {
          const { state, context, restored } = crashAfter(c.machine, c.input, events.slice(0, k));
          expect(restored.getSnapshot().context).toEqual(context);
          expect(valueOf(restored.getSnapshot())).toBe(state);
          const rule = c.table[state];
          expect(rule, `restart rule for ${state}`).toBeDefined();
          restored.send({ type: 'RESTORED', restores: 1 });
          const after = valueOf(restored.getSnapshot());
          if (rule === 'roll_back') {
            expect(after).toBe('rolling_back');
            restored.send(finishers.rolling_back!);
            expect(valueOf(restored.getSnapshot())).toBe('rolled_back');
          } else if (rule === 'hold') {
            // Recovery leaves a paused job paused; the user's next step (cancel) still applies.
            expect(after).toBe('paused');
            for (const e of events.slice(k)) restored.send(e);
            expect(valueOf(restored.getSnapshot())).toBe(end);
          } else {
            expect(after).toBe(state);
            for (const e of events.slice(k)) restored.send(e);
            expect(valueOf(restored.getSnapshot())).toBe(end);
          }
          restored.stop();

          // The same crash, restored once too often: never a normal finish.
          const looping = crashAfter(c.machine, c.input, events.slice(0, k)).restored;
          looping.send({ type: 'RESTORED', restores: MAX_RESTORES + 1 });
          const loopState = valueOf(looping.getSnapshot());
          if (rule === 'hold') {
            // Not a loop: nothing runs while paused, so restores of a paused job are harmless.
            expect(loopState).toBe('paused');
            looping.stop();
            continue;
          }
          expect(['failed', 'rolling_back', 'cleaning_up']).toContain(loopState);
          const finisher = finishers[loopState];
          if (finisher !== undefined) looping.send(finisher);
          expect(['failed', 'rolled_back']).toContain(valueOf(looping.getSnapshot()));
          expect((looping.getSnapshot().context as { error: { message: string } | null }).error?.message ?? '').toMatch(/restart loop|cancelled|error|failed|INTERNAL/);
          looping.stop();
        }
      });
    }

    it('pauses in every pausable state and, restored as recovery restores it, resumes where it stopped', () => {
      const pausable = Object.entries(c.machine.root.states)
        .filter(([, node]) => Object.keys(node.on).includes('PAUSE'))
        .map(([key]) => key);
      if (!('paused' in c.table)) {
        expect(pausable).toEqual([]);
        return;
      }
      expect(pausable.length).toBeGreaterThan(0);
      for (const p of finalPaths.filter((fp) => valueOf(fp.state) === 'committed')) {
        const events: EventObject[] = p.steps.map((s): EventObject => s.event as EventObject).filter((e) => e.type !== 'xstate.init');
        for (let k = 0; k < events.length; k++) {
          const live = createActor(c.machine, { input: c.input }).start();
          for (const e of events.slice(0, k)) live.send(e);
          const at = valueOf(live.getSnapshot());
          if (!pausable.includes(at)) {
            live.stop();
            continue;
          }
          live.send({ type: 'PAUSE' });
          expect(valueOf(live.getSnapshot())).toBe('paused');
          const { restored } = crashAfter(c.machine, c.input, [...events.slice(0, k), { type: 'PAUSE' }]);
          live.stop();
          restored.send({ type: 'RESTORED', restores: 1 });
          expect(valueOf(restored.getSnapshot())).toBe('paused');
          restored.send({ type: 'RESUME' });
          expect(valueOf(restored.getSnapshot()), `resumed from a pause in ${at}`).toBe(at);
          for (const e of events.slice(k)) restored.send(e);
          expect(valueOf(restored.getSnapshot())).toBe('committed');
          restored.stop();
        }
      }
    });

    it('covered every non-final state in some crash', () => {
      const visited = new Set<string>();
      for (const p of finalPaths) for (const s of p.steps) visited.add(valueOf(s.state));
      for (const [key, node] of Object.entries(c.machine.root.states)) if (node.type !== 'final') expect(visited.has(key), key).toBe(!(c.skip ?? []).includes(key));
      expect(finalPaths.length).toBeGreaterThan(0);
    });
  });
}
