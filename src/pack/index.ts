// `modelhub pack SRC_DIR --out DIR [--platform P]` as a library (SPEC §5).
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ModelhubError } from '../errors.js';
import { isEnoent } from './fsutil.js';
import { MODEL_JSON, packModel } from './model.js';
import { packService, SERVICE_JSON } from './service.js';
import type { PackOptions, PackResult } from './common.js';

export type { PackOptions, PackProgress, PackResult } from './common.js';
export { packModel, MODEL_JSON } from './model.js';
export { ARCHIVE_NAME, MANIFEST_NAME, SERVICE_JSON, SIGNATURE_NAME, packService, zipEntryTime } from './service.js';
export { STORED_EXTENSIONS, chooseCompression } from './compress.js';

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch (err) {
    if (isEnoent(err)) return false;
    throw err;
  }
}

/** Pack SRC_DIR (a service when it holds service.json, a model when it holds model.json) into outDir. */
export async function pack(srcDir: string, outDir: string, opts: PackOptions = {}): Promise<PackResult> {
  let st;
  try {
    st = await stat(srcDir);
  } catch (err) {
    throw new ModelhubError('INVALID_REQUEST', `SRC_DIR: ${srcDir} does not exist`, { cause: err });
  }
  if (!st.isDirectory()) throw new ModelhubError('INVALID_REQUEST', `SRC_DIR: ${srcDir} is not a directory`);
  const hasService = await isFile(path.join(srcDir, SERVICE_JSON));
  const hasModel = await isFile(path.join(srcDir, MODEL_JSON));
  if (hasService && hasModel) {
    throw new ModelhubError('INVALID_REQUEST', `SRC_DIR: holds both ${SERVICE_JSON} and ${MODEL_JSON}; a package is one or the other`);
  }
  if (hasService) {
    if (opts.platform === undefined || opts.platform === '') {
      throw new ModelhubError('INVALID_REQUEST', '--platform is required for a service');
    }
    return packService(srcDir, outDir, opts);
  }
  if (hasModel) return packModel(srcDir, outDir, opts);
  throw new ModelhubError('INVALID_REQUEST', `SRC_DIR: ${srcDir} holds neither ${SERVICE_JSON} nor ${MODEL_JSON}`);
}
