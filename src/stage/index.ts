// The engine's stager: see stage.ts.
export { stageArchive, stagedMode, unsafeNameReason, SERVICE_JSON, type StageProgress, type StageRequest, type StageResult } from './stage.js';
export { jsonEqual } from './json-equal.js';
