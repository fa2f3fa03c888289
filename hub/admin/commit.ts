// Makes a checked upload a release in one step for readers: the directory is renamed into
// place (atomic on one file system), the parent fsynced, then the catalog row is inserted.
// A crash between the two leaves a directory without a row, which sweepOrphans removes at the
// next start and which no reader can reach meanwhile (every read goes through the catalog).
import { mkdir, rename } from 'node:fs/promises';
import { fsyncDir } from '../../src/fs/durable.js';
import path from 'node:path';
import { ModelhubError } from '../../src/errors.js';
import type { Catalog, ReleaseRow } from '../catalog.js';
import type { IncomingUpload } from './incoming.js';


export async function commitRelease(upload: IncomingUpload, finalDir: string, catalog: Catalog, row: ReleaseRow): Promise<void> {
  const label = `${row.kind} ${row.id} ${row.version}${row.platform === '' ? '' : ` ${row.platform}`}`;
  if (catalog.release(row.kind, row.id, row.version, row.platform) !== undefined) {
    throw new ModelhubError('ALREADY_EXISTS', `${label} is already published; releases are immutable`);
  }
  await fsyncDir(upload.dir);
  await mkdir(path.dirname(finalDir), { recursive: true });
  try {
    await rename(upload.dir, finalDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new ModelhubError('ALREADY_EXISTS', `${label} is being published by another request`, { cause: err });
    }
    throw err;
  }
  await fsyncDir(path.dirname(finalDir));
  if (!catalog.insert(row)) {
    throw new ModelhubError('ALREADY_EXISTS', `${label} is already published; releases are immutable`);
  }
}
