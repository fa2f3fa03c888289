// Per-file compression choice, deterministic for identical content and name: STORE files that
// are already compressed or random (by extension, else by deflating a 64 KiB sample), DEFLATE
// the rest.
import { open } from 'node:fs/promises';
import path from 'node:path';
import { deflateRawSync } from 'node:zlib';

/** Extensions of formats that are already compressed or are dense numeric data. */
export const STORED_EXTENSIONS: ReadonlySet<string> = new Set([
  // model weights and tensors
  '.bin', '.onnx', '.safetensors', '.gguf', '.ggml', '.pt', '.pth', '.ckpt', '.npy', '.npz',
  '.h5', '.tflite', '.pb', '.msgpack', '.mlmodel',
  // archives and compressed streams
  '.zip', '.gz', '.tgz', '.bz2', '.xz', '.zst', '.lz4', '.br', '.7z', '.rar', '.whl', '.jar',
  // media
  '.jpg', '.jpeg', '.png', '.gif', '.webp', '.mp3', '.mp4', '.ogg', '.opus', '.flac', '.wav', '.m4a', '.webm',
]);

export const SAMPLE_BYTES = 64 * 1024;
/** Deflating the sample must save more than 10 % for the file to be deflated. */
export const STORE_RATIO = 0.9;
export const DEFLATE_LEVEL = 6;

export type Compression = 'store' | 'deflate';

export async function chooseCompression(relPath: string, realPath: string, size: number): Promise<Compression> {
  if (size === 0) return 'store';
  if (STORED_EXTENSIONS.has(path.posix.extname(relPath).toLowerCase())) return 'store';
  const fh = await open(realPath, 'r');
  try {
    const want = Math.min(size, SAMPLE_BYTES);
    const buf = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got === 0) return 'store';
    const deflated = deflateRawSync(buf.subarray(0, got), { level: DEFLATE_LEVEL });
    return deflated.length / got > STORE_RATIO ? 'store' : 'deflate';
  } finally {
    await fh.close();
  }
}
