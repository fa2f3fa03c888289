// What the node believes about the hub's catalog (SPEC §11): the key statements applied to the
// trust store, the certified metadata key, and the newest snapshot it verified. The highest
// serial seen is kept in engine.db, so a replayed older snapshot is refused (rollback attack)
// and an expired one too (freeze attack). Once a node has seen certified metadata it requires
// it from then on: a hub (or mirror) that stops serving the delegation cannot make it fall
// back to the unsigned listing.
//
// Per service and model, a rollback floor: the highest version ever offered to this node as
// latest or installed on it. It survives uninstall; only an explicit --allow-downgrade goes
// below it.
import semver from 'semver';
import { ModelhubError } from '../errors.js';
import type { Snapshot } from '../metadata/formats.js';
import { verifyDelegation, verifySnapshot } from '../metadata/verify.js';
import type { TrustStore } from '../trust/store.js';
import type { Db } from './db.js';
import type { HubClient } from './hub-client.js';

export type CatalogMetadata = { snapshot: Snapshot } | { snapshot: null; why: string };

export type FloorKind = 'service' | 'model';

export class NodeMetadata {
  /** @internal engine.db is not part of the public API. */
  constructor(
    private readonly db: Db,
    private readonly trust: TrustStore,
    private readonly now: () => number,
  ) {}

  private seen(): { serial: number; key_id: string } | undefined {
    return this.db.prepare('SELECT serial, key_id FROM metadata_seen WHERE id = 1').get() as { serial: number; key_id: string } | undefined;
  }

  /**
   * The hub's verified snapshot; `snapshot: null` (with why) only when the hub has no
   * delegation and this node never saw certified metadata. Every other doubt throws.
   */
  async load(hub: HubClient, signal: AbortSignal): Promise<CatalogMetadata> {
    // TUF 5.3: keys first, so a rotated-to key can certify and a revoked one cannot.
    await this.trust.applyStatements(await hub.keyStatements(signal));
    const seen = this.seen();
    const delegation = await hub.delegation(signal);
    if (delegation === null) {
      if (seen !== undefined) throw new ModelhubError('UNTRUSTED_KEY', `the hub no longer serves the delegation of its metadata key, but this node verified its snapshot ${seen.serial} before`);
      return { snapshot: null, why: "the hub's metadata key is not certified by a trusted publisher key (modelhub certify-hub-key)" };
    }
    const now = this.now();
    const certified = verifyDelegation(delegation, await this.trust.keys(), now);
    const snapshot = verifySnapshot(await hub.snapshot(signal), certified.key, now, seen?.serial ?? null);
    this.db
      .prepare(
        `INSERT INTO metadata_seen (id, serial, key_id, expires, verified_at) VALUES (1, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET serial = MAX(serial, excluded.serial), key_id = excluded.key_id, expires = excluded.expires, verified_at = excluded.verified_at`,
      )
      .run(snapshot.serial, certified.keyId, snapshot.expires, now);
    return { snapshot };
  }

  floor(kind: FloorKind, id: string): string | null {
    const row = this.db.prepare('SELECT version FROM version_floor WHERE kind = ? AND id = ?').get(kind, id) as { version: string } | undefined;
    return row?.version ?? null;
  }

  /** Raises the floor to `version` when it is higher; never lowers it. */
  raiseFloor(kind: FloorKind, id: string, version: string | null): void {
    if (version === null || semver.valid(version) === null) return;
    this.db
      .transaction(() => {
        const floor = this.floor(kind, id);
        if (floor !== null && semver.gte(floor, version)) return;
        this.db.prepare('INSERT INTO version_floor (kind, id, version) VALUES (?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version').run(kind, id, version);
      })
      .immediate();
  }

  /** DOWNGRADE_REFUSED below the floor, unless the user asked for it. */
  assertAboveFloor(kind: FloorKind, id: string, version: string, allowDowngrade: boolean): void {
    const floor = this.floor(kind, id);
    if (floor === null || allowDowngrade || semver.gte(version, floor)) return;
    throw new ModelhubError('DOWNGRADE_REFUSED', `${id} ${version} is older than ${floor}, which this node already had or was offered; pass --allow-downgrade to install it`, {
      details: { floor, version },
    });
  }
}
