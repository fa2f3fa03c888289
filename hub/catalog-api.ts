// Public catalog answers (SPEC §4), computed from the catalog rows alone.
import { latestVersion } from '../src/schemas/versions.js';
import { idSchema, platformSchema, versionSchema } from '../src/schemas/common.js';
import { modelManifestSchema, serviceManifestSchema, type ModelManifest, type ServiceManifest } from '../src/schemas/manifest.js';
import { parseOrThrow } from '../src/schemas/parse.js';
import type { CatalogStore, ReleaseRow } from './catalog/store.js';
import { fail, json, type HubResponse } from './response.js';

function serviceManifestOf(row: ReleaseRow): ServiceManifest {
  return parseOrThrow(serviceManifestSchema, JSON.parse(row.manifest), 'INTERNAL', 'stored manifest');
}

function modelManifestOf(row: ReleaseRow): ModelManifest {
  return parseOrThrow(modelManifestSchema, JSON.parse(row.manifest), 'INTERNAL', 'stored manifest');
}

export { latestVersion };

/**
 * The plain listing's latest: the newest version every node is offered. A staged rollout (below
 * 100 %) is offered only through the signed snapshot, where each node computes its share.
 */
function fullyRolledOut(rows: readonly ReleaseRow[]): string | null {
  return latestVersion(rows.filter((r) => r.rollout >= 100).map((r) => r.version));
}

function groupBy<T>(rows: readonly T[], key: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const row of rows) {
    const k = key(row);
    const list = groups.get(k);
    if (list === undefined) groups.set(k, [row]);
    else list.push(row);
  }
  return groups;
}

export function isValidId(id: string): boolean {
  return idSchema.safeParse(id).success;
}
export function isValidVersion(v: string): boolean {
  return versionSchema.safeParse(v).success;
}
export function isValidPlatform(p: string): boolean {
  return platformSchema.safeParse(p).success;
}

// ---- models ----------------------------------------------------------------------------

function modelSummary(rows: ReleaseRow[]): object {
  // rows are newest first (CatalogStore.releases sorts them)
  const newest = modelManifestOf(rows[0]!);
  const stable = rows.filter((r) => r.stable === 1).map((r) => r.version);
  return {
    id: newest.id,
    name: newest.model.name,
    task: newest.model.task,
    languages: newest.model.languages,
    default_version: latestVersion(stable) ?? latestVersion(rows.map((r) => r.version)),
    versions: rows.map((row) => {
      const m = modelManifestOf(row);
      return {
        version: row.version,
        size_bytes: row.size_bytes,
        files: m.files.map((f) => ({ path: f.path, size_bytes: f.size, sha256: f.sha256 })),
        checksum_sha256: row.sha256,
        updated_at: row.published_at,
        stable: row.stable === 1,
      };
    }),
  };
}

export async function listModels(catalog: CatalogStore): Promise<HubResponse> {
  const groups = groupBy(await catalog.releases('model'), (r) => r.id);
  return json(200, [...groups.values()].map(modelSummary));
}

export async function getModel(catalog: CatalogStore, id: string): Promise<HubResponse> {
  const rows = isValidId(id) ? await catalog.releases('model', id) : [];
  if (rows.length === 0) return fail('NOT_FOUND', `no model "${id}"`);
  return json(200, modelSummary(rows));
}

// ---- services --------------------------------------------------------------------------

export async function listServices(catalog: CatalogStore, platform: string | undefined): Promise<HubResponse> {
  if (platform !== undefined && !isValidPlatform(platform)) {
    return fail('INVALID_REQUEST', `unknown platform "${platform}"`, { platforms: platformSchema.options });
  }
  const all = (await catalog.releases('service')).filter((r) => platform === undefined || r.platform === platform);
  const services = [...groupBy(all, (r) => r.id).values()].map((rows) => {
    const byVersion = groupBy(rows, (r) => r.version);
    const newest = serviceManifestOf(rows[0]!);
    return {
      service_id: newest.id,
      service_name: newest.service.service_name ?? newest.id,
      latest_version: fullyRolledOut(rows),
      stable_version: latestVersion(rows.filter((r) => r.stable === 1).map((r) => r.version)),
      versions: [...byVersion.entries()].map(([version, vrows]) => ({
        version,
        platforms: vrows.map((r) => r.platform),
        size_bytes: vrows[0]!.size_bytes,
        created_at: vrows[0]!.created_at,
        stable: vrows.some((r) => r.stable === 1),
      })),
    };
  });
  return json(200, services);
}

export async function getService(catalog: CatalogStore, id: string): Promise<HubResponse> {
  const rows = isValidId(id) ? await catalog.releases('service', id) : [];
  if (rows.length === 0) return fail('NOT_FOUND', `no service "${id}"`);
  const newest = serviceManifestOf(rows[0]!);
  const byVersion = groupBy(rows, (r) => r.version);
  return json(200, {
    service_id: id,
    service_name: newest.service.service_name ?? id,
    latest_version: fullyRolledOut(rows),
    stable_version: latestVersion(rows.filter((r) => r.stable === 1).map((r) => r.version)),
    versions: [...byVersion.entries()].map(([version, vrows]) => ({
      version,
      created_at: vrows[0]!.created_at,
      stable: vrows.some((r) => r.stable === 1),
      platforms: Object.fromEntries(
        vrows.map((r) => [
          r.platform,
          {
            sha256: r.sha256,
            size_bytes: r.size_bytes,
            url: `/storage/services/${id}/${version}/${r.platform}/service.zip`,
            manifest_url: `/api/services/${id}/${version}/${r.platform}/manifest`,
            signature_url: `/api/services/${id}/${version}/${r.platform}/manifest.minisig`,
          },
        ]),
      ),
    })),
  });
}

/** Resolves (id, version, platform) to a row or the precise reason there is none. */
export async function findServiceRelease(
  catalog: CatalogStore,
  id: string,
  version: string,
  platform: string,
): Promise<{ row: ReleaseRow } | { error: HubResponse }> {
  if (!isValidId(id)) return { error: fail('NOT_FOUND', `no service "${id}"`) };
  const rows = await catalog.releases('service', id);
  if (rows.length === 0) return { error: fail('NOT_FOUND', `no service "${id}"`) };
  if (!isValidVersion(version) || !rows.some((r) => r.version === version)) {
    return { error: fail('VERSION_NOT_FOUND', `service "${id}" has no version "${version}"`, { versions: [...new Set(rows.map((r) => r.version))] }) };
  }
  const row = rows.find((r) => r.version === version && r.platform === platform);
  if (row === undefined) {
    return {
      error: fail('PLATFORM_NOT_SUPPORTED', `service "${id}" ${version} has no release for platform "${platform}"`, {
        platforms: rows.filter((r) => r.version === version).map((r) => r.platform),
      }),
    };
  }
  return { row };
}

export async function checksum(catalog: CatalogStore, id: string, version: string, platform: string): Promise<HubResponse> {
  const found = await findServiceRelease(catalog, id, version, platform);
  if ('error' in found) return found.error;
  const { row } = found;
  return json(200, { service_id: id, version, platform, sha256: row.sha256, size_bytes: row.size_bytes });
}

export async function findModelRelease(catalog: CatalogStore, id: string, version: string): Promise<{ row: ReleaseRow; manifest: ModelManifest } | { error: HubResponse }> {
  if (!isValidId(id)) return { error: fail('NOT_FOUND', `no model "${id}"`) };
  const rows = await catalog.releases('model', id);
  if (rows.length === 0) return { error: fail('NOT_FOUND', `no model "${id}"`) };
  const row = isValidVersion(version) ? rows.find((r) => r.version === version) : undefined;
  if (row === undefined) return { error: fail('VERSION_NOT_FOUND', `model "${id}" has no version "${version}"`) };
  return { row, manifest: modelManifestOf(row) };
}

export async function ranking(catalog: CatalogStore, limitText: string | undefined): Promise<HubResponse> {
  let limit = 50;
  if (limitText !== undefined) {
    limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return fail('INVALID_REQUEST', 'limit must be an integer between 1 and 1000');
    }
  }
  const rows = await catalog.ranking(limit);
  // Ranked by request_count + unavailable_count (CatalogStore.ranking): unmet demand counts as demand.
  return json(200, rows.map((r, i) => ({ model_id: r.model_id, request_count: r.request_count, unavailable_count: r.unavailable_count, rank: i + 1 })));
}


