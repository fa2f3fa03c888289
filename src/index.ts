// `modelhub`: the engine as a library (what an Electron main process or a Node service embeds).
export { Engine } from './engine/engine.js';
export type { EngineOptions, InstallOptions, InstallResult, JobResult, PullOptions, RecoverReport } from './engine/engine.js';
export type { EngineHookEvents } from './engine/progress.js';
export type { RecordsNotice } from './engine/records.js';
export type { PointerRepair } from './engine/pointers.js';
export type { VerifyTarget } from './engine/verify.js';
export { ERROR_CODES, isErrorCode, ModelhubError, toModelhubError } from './errors.js';
export type { ErrorCode, ModelhubErrorOptions } from './errors.js';
export type { FetchLike, FetchResponseLike } from './download/fetch-like.js';
export type { TrustedKey } from './trust/store.js';
export type * from './client/types.js';
