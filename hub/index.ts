// `modelhub/hub`: start a Model Hub from code (what `modelhub hub serve` runs).
export { createHub, createHub as startHub } from './server.js';
export type { Hub, HubOptions } from './server.js';
export { readPublicKeyFile } from '../src/sign/keygen.js';
export type { PublicKey } from '../src/sign/minisign-format.js';
export type { CatalogStore, ReleaseRow, ReleaseKind } from './catalog/store.js';
