// Receives a multipart upload into a private directory under .incoming, hashing every part
// while it streams. Nothing here is visible to readers until commit.ts moves it into place.
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { fsyncFile } from '../../src/fs/durable.js';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { ModelhubError } from '../../src/errors.js';

export interface ReceivedPart {
  /** Absolute path of the stored bytes. */
  file: string;
  size: number;
  sha256: string;
}

export class IncomingUpload {
  readonly dir: string;
  readonly parts = new Map<string, ReceivedPart>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** `owner` prefixes the folder's name: the hub process it belongs to (incomingOwnerPrefix). */
  static async create(incomingRoot: string, owner = ''): Promise<IncomingUpload> {
    const dir = path.join(incomingRoot, `${owner}${randomUUID()}`);
    await mkdir(dir, { recursive: true });
    return new IncomingUpload(dir);
  }

  /**
   * Streams one part to `relPath` inside the upload directory, enforcing `maxBytes` while
   * streaming, then fsyncs it.
   */
  async receive(field: string, relPath: string, source: Readable, maxBytes: number): Promise<ReceivedPart> {
    if (this.parts.has(field)) throw new ModelhubError('INVALID_REQUEST', `multipart field "${field}" appears twice`);
    const file = path.join(this.dir, relPath);
    await mkdir(path.dirname(file), { recursive: true });
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) {
          done(new ModelhubError('SIZE_EXCEEDED', `multipart field "${field}" is larger than ${maxBytes} bytes`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    await pipeline(source, meter, createWriteStream(file, { flags: 'wx', highWaterMark: 1 << 20 }));
    await fsyncFile(file);
    const part = { file, size, sha256: hash.digest('hex') };
    this.parts.set(field, part);
    return part;
  }

  async discard(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
