// Makes a checked upload a release, one step for readers on every hub sharing the catalog: in
// one catalog transaction, under the release's lock, the row is inserted — the insert decides
// who publishes: a release that exists answers 409 and its folder is never touched —, the upload
// directory is renamed into place (atomic on one file system) and its parent fsynced, and only
// then is the row committed. A hub killed before the commit leaves no row, so no hub lists or
// serves what it moved; such a folder without a row (an orphan) stays until an operator runs
// `modelhub hub orphans --quarantine`, and a publish of the same release meanwhile is refused
// rather than replacing it.
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir } from '../../src/fs/durable.js';
import { ModelhubError } from '../../src/errors.js';
import type { CatalogStore, NewRelease } from '../catalog/store.js';
import type { IncomingUpload } from './incoming.js';

export async function commitRelease(upload: IncomingUpload, finalDir: string, catalog: CatalogStore, row: NewRelease, storageRoot?: string): Promise<void> {
  const label = `${row.kind} ${row.id} ${row.version}${row.platform === '' ? '' : ` ${row.platform}`}`;
  await fsyncDir(upload.dir);
  await mkdir(path.dirname(finalDir), { recursive: true });
  const published = await catalog.publish(row, async () => {
    try {
      // rename(2) replaces an empty directory but never one with files: whatever is there
      // without a row (an orphan) stays as it is.
      await rename(upload.dir, finalDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        const folder = storageRoot === undefined ? finalDir : path.relative(storageRoot, finalDir).split(path.sep).join('/');
        throw new ModelhubError(
          'ALREADY_EXISTS',
          `${label} is not in the catalog, but the storage folder ${folder} already holds files for it (left by an interrupted publish, or newer than a restored catalog); nothing was changed: move them aside with \`modelhub hub orphans --storage DIR [--db URL] --quarantine\`, then publish again`,
          { cause: err, details: { orphan: folder } },
        );
      }
      throw err;
    }
    await fsyncDir(path.dirname(finalDir));
  });
  if (!published) throw new ModelhubError('ALREADY_EXISTS', `${label} is already published; releases are immutable`);
}
