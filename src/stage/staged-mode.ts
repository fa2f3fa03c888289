// Import-free, for the prestage worker thread.
export const FILE_MODE = 0o644;
export const EXEC_MODE = 0o755;

/** The mode a staged file gets: from the signed manifest only, normalised to 0755 or 0644. */
export function stagedMode(manifestMode: number | undefined): number {
  return manifestMode !== undefined && (manifestMode & 0o111) !== 0 ? EXEC_MODE : FILE_MODE;
}
