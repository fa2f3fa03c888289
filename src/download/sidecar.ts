// `${dest}.part.json`: which URL, ETag, signed size and signed SHA-256 the bytes of `${dest}.part` belong to,
// and, for a download in segments, which ranges of the part hold bytes (`pieces`, each
// `[start, pos, end]`: bytes [start, pos) are written, [pos, end) are still to fetch) and the
// part's inode (a part replaced behind our back must not be taken for ours). Without `pieces`
// the part is a prefix of the file and its size says how much of it there is.
//
// Rewritten atomically (temp file + rename). What it claims is never more than was written
// when it was saved; after a power cut the bytes may still be torn, which the hash catches.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';

const count = z.number().int().nonnegative();

const sidecarSchema = z.object({
  url: z.string(),
  etag: z.string().nullable().catch(null),
  size: count,
  /**
   * The signed SHA-256 the bytes are meant to hash to. Bytes of the same signed file are kept
   * whichever source (mirror or hub) served them; the final hash checks the mix. Older
   * sidecars have none: their part is kept only for the same URL.
   */
  sha256: z.string().optional(),
  ino: z.string().optional(),
  pieces: z.array(z.tuple([count, count, count])).optional(),
});

export type Sidecar = z.infer<typeof sidecarSchema>;
export type SavedPiece = [start: number, pos: number, end: number];

export async function readSidecar(file: string): Promise<Sidecar | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const r = sidecarSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null; // torn or foreign: treat as absent (the hash still guards the result)
  }
}

/** Writes are serialised per file by the caller; the temp name is per process. */
export async function writeSidecar(file: string, data: Sidecar): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(data)}\n`);
  await rename(tmp, file);
}
