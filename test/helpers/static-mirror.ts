// A mirror for tests (SPEC §12): a small static file server over a copy of a hub's storage
// folder, as any web server or CDN would serve it — GET and HEAD, one `Range: bytes=a-b`
// (206, 416), an ETag of its own (nginx's form, mtime-size: not the hub's), If-Range,
// Accept-Ranges, Content-Length. It knows nothing of modelhub: no /api/, no catalog. It counts
// what it serves and, when told, breaks off a response and stops listening (a mirror that dies
// mid-file). Closed after the file's tests.
import { cp, readFile, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import { afterAll } from 'vitest';

export interface StaticMirror {
  /** Base URL, ending with `/`: what `--mirror` takes. */
  url: string;
  root: string;
  /** Every request: decoded path below the base, Range asked for, status, body bytes sent. */
  log: { path: string; range: string | undefined; status: number; bytes: number }[];
  /** Body bytes sent for paths starting with `prefix` (all when omitted). */
  bytes(prefix?: string): number;
  /** The next response with a body sends `bytes` of it, then the connection is cut and the mirror stops listening (refused from then on). */
  dieAfter(bytes: number): void;
  close(): Promise<void>;
}

const mirrors: StaticMirror[] = [];
afterAll(async () => {
  await Promise.all(mirrors.splice(0).map((m) => m.close()));
});

/**
 * Copies what a mirror holds of a storage folder: `services/` and `models/` — never the hub's
 * database or its metadata key (docs/trust.md).
 */
export async function copyStorage(storage: string, dest: string): Promise<string> {
  for (const sub of ['services', 'models']) {
    await cp(path.join(storage, sub), path.join(dest, sub), { recursive: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
  return dest;
}

/** Flips one byte of a file in place (a tampered mirror). */
export async function flipByte(file: string, at: number): Promise<void> {
  const data = await readFile(file);
  if (at < 0 || at >= data.length) throw new Error(`flipByte: ${at} is outside ${file} (${data.length} bytes)`);
  data[at] = data[at]! ^ 0xff;
  await writeFile(file, data);
}

/** A base URL on which nothing listens: every connection is refused (a dead mirror). */
export async function refusedUrl(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}/`;
}

export async function startStaticMirror(folder: string): Promise<StaticMirror> {
  const root = path.resolve(folder);
  const sockets = new Set<Socket>();
  let dieAfter: number | null = null;
  const log: StaticMirror['log'] = [];

  const server = http.createServer((req, res) => {
    void serve(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const entry = { path: '', range: typeof req.headers.range === 'string' ? req.headers.range : undefined, status: 0, bytes: 0 };
    log.push(entry);
    const reply = (status: number, headers: Record<string, string> = {}, body = ''): void => {
      entry.status = status;
      res.writeHead(status, { 'Content-Type': 'text/plain', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    let rel: string;
    try {
      rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    } catch {
      return reply(400, {}, 'bad path');
    }
    entry.path = rel;
    const file = path.resolve(root, rel);
    if (rel === '' || !file.startsWith(root + path.sep) || rel.split('/').includes('..')) return reply(404, {}, 'not found');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, { Allow: 'GET, HEAD' }, 'method not allowed');
    let st;
    try {
      st = await stat(file);
    } catch {
      return reply(404, {}, 'not found');
    }
    if (!st.isFile()) return reply(404, {}, 'not found');
    const size = st.size;
    const etag = `"${Math.floor(st.mtimeMs / 1000).toString(16)}-${size.toString(16)}"`;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const headers: Record<string, string> = { ETag: etag, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    const ifRange = req.headers['if-range'];
    const range = entry.range;
    if (range !== undefined && (ifRange === undefined || ifRange === etag)) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (m !== null) {
        const a = Number(m[1]);
        const b = m[2] === '' || m[2] === undefined ? size - 1 : Math.min(Number(m[2]), size - 1);
        if (a >= size || a > b) return reply(416, { 'Content-Range': `bytes */${size}` });
        start = a;
        end = b;
        status = 206;
        headers['Content-Range'] = `bytes ${a}-${b}/${size}`;
      }
    }
    const length = end - start + 1;
    headers['Content-Length'] = String(length);
    entry.status = status;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    const cut = dieAfter;
    dieAfter = null;
    const stream = createReadStream(file, { start, end: cut === null ? end : Math.min(end, start + cut - 1), highWaterMark: 256 * 1024 });
    stream.on('data', (chunk) => {
      entry.bytes += chunk.length;
    });
    stream.on('error', () => res.destroy());
    if (cut === null) {
      stream.pipe(res);
      return;
    }
    // A mirror that dies: the bytes up to the cut reach the socket, then it goes away for good.
    stream.on('data', (chunk) => res.write(chunk));
    stream.on('end', () => {
      res.write('', () => {
        server.close();
        for (const s of sockets) s.destroy();
      });
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const m: StaticMirror = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    root,
    log,
    bytes: (prefix = '') => log.filter((e) => e.path.startsWith(prefix)).reduce((n, e) => n + e.bytes, 0),
    dieAfter(bytes) {
      dieAfter = bytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
  mirrors.push(m);
  return m;
}
