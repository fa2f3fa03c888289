// A file server for downloader tests whose misbehaviour is scripted per request. By default it
// is a correct server: single `Range: bytes=a-[b]`, a strong ETag, `If-Range`, 416. A test
// queues behaviours with `plan`; each request takes the next one, then `fallback` applies.
// Every request is logged with the body bytes the server actually handed to the socket.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  | { kind: 'normal' }
  /** Always 200 with the whole file, whatever Range says. */
  | { kind: 'ignore-range' }
  /** Honour Range but not If-Range: a 206 of the current file whatever the client's ETag. */
  | { kind: 'ignore-if-range' }
  /** 206 whose Content-Range start (and body) is 7 bytes off, or whose total is wrong. */
  | { kind: 'wrong-content-range'; field: 'start' | 'total' }
  /** Send `after` bytes of the body, then close the connection (Content-Length says more). */
  | { kind: 'truncate'; after: number }
  /** Send `after` bytes of the body, then go silent with the socket open. */
  | { kind: 'stall'; after: number }
  /** Accept the request and never answer, not even headers. */
  | { kind: 'no-headers' }
  /** Serve the file with the byte at file offset `at` flipped. */
  | { kind: 'flip'; at: number }
  /** The file plus `extra` bytes; with an honest Content-Length or chunked (no length). */
  | { kind: 'extra'; extra: number; contentLength: boolean }
  /** 200, chunked, bytes forever. */
  | { kind: 'endless' }
  /** Answer this status with a short text body. */
  | { kind: 'status'; status: number };

export interface RequestLog {
  path: string;
  range: string | undefined;
  ifRange: string | undefined;
  behaviour: Behaviour['kind'];
  status: number;
  /** Body bytes written to the socket for this request. */
  bytesSent: number;
  /** The response is over: sent, or its connection closed (by the client, say). */
  closed: boolean;
}

export interface HostileServer {
  base: string;
  /** URL of a served file (default `/file`). */
  url(file?: string): string;
  setFile(file: string, data: Buffer): void;
  etagOf(file?: string): string;
  plan: Behaviour[];
  fallback: Behaviour;
  requests: RequestLog[];
  bytesSent(): number;
  reset(): void;
  close(): Promise<void>;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function etagFor(data: Buffer): string {
  return `"${sha256(data).slice(0, 32)}"`;
}

export async function startHostileServer(files: Record<string, Buffer>): Promise<HostileServer> {
  const store = new Map<string, { data: Buffer; etag: string }>();
  for (const [name, data] of Object.entries(files)) store.set(`/${name}`, { data, etag: etagFor(data) });

  const state = { plan: [] as Behaviour[], fallback: { kind: 'normal' } as Behaviour, requests: [] as RequestLog[] };

  const server = http.createServer((req, res) => {
    const urlPath = new URL(req.url ?? '/', 'http://x').pathname;
    const behaviour = state.plan.shift() ?? state.fallback;
    const log: RequestLog = {
      path: urlPath,
      range: header(req, 'range'),
      ifRange: header(req, 'if-range'),
      behaviour: behaviour.kind,
      status: 0,
      bytesSent: 0,
      closed: false,
    };
    state.requests.push(log);
    res.on('close', () => (log.closed = true));
    const send = (buf: Buffer, cb?: () => void): void => {
      log.bytesSent += buf.length;
      res.write(buf, cb);
    };

    if (behaviour.kind === 'no-headers') return; // silence; closeAllConnections ends it
    if (behaviour.kind === 'status') {
      log.status = behaviour.status;
      res.writeHead(behaviour.status, { 'Content-Type': 'text/plain' });
      res.end('nope');
      return;
    }
    const file = store.get(urlPath);
    if (file === undefined) {
      log.status = 404;
      res.writeHead(404).end('not found');
      return;
    }
    const { data, etag } = file;
    const size = data.length;

    if (behaviour.kind === 'endless') {
      log.status = 200;
      res.writeHead(200, { ETag: etag }); // no Content-Length: chunked
      const block = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (!res.destroyed) {
          log.bytesSent += block.length;
          if (!res.write(block)) {
            res.once('drain', pump);
            return;
          }
        }
      };
      res.on('close', () => res.off('drain', pump));
      pump();
      return;
    }
    if (behaviour.kind === 'extra') {
      const body = Buffer.concat([data, Buffer.alloc(behaviour.extra, 0x62)]);
      log.status = 200;
      res.writeHead(200, behaviour.contentLength ? { ETag: etag, 'Content-Length': String(body.length) } : { ETag: etag });
      send(body);
      res.end();
      return;
    }

    // Which part of the file does this response carry?
    let start = 0;
    let end = size - 1;
    let partial = false;
    const range = log.range;
    const ifRangeOk = log.ifRange === undefined || log.ifRange === etag || behaviour.kind === 'ignore-if-range';
    if (range !== undefined && ifRangeOk && behaviour.kind !== 'ignore-range') {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (m !== null) {
        const a = Number(m[1]);
        const b = m[2] === '' || m[2] === undefined ? size - 1 : Math.min(Number(m[2]), size - 1);
        if (a >= size || a > b) {
          log.status = 416;
          res.writeHead(416, { 'Content-Range': `bytes */${size}`, ETag: etag });
          res.end();
          return;
        }
        start = a;
        end = b;
        partial = true;
      }
    }
    let body = data.subarray(start, end + 1);
    const headers: Record<string, string> = { ETag: etag, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    let status = partial ? 206 : 200;
    if (behaviour.kind === 'wrong-content-range') {
      status = 206;
      if (behaviour.field === 'start') {
        const s = Math.min(start + 7, size - 1);
        body = data.subarray(s, end + 1);
        headers['Content-Range'] = `bytes ${s}-${end}/${size}`;
      } else {
        headers['Content-Range'] = `bytes ${start}-${end}/${size + 1}`;
      }
    } else if (partial) {
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    if (behaviour.kind === 'flip' && behaviour.at >= start && behaviour.at <= end) {
      body = Buffer.from(body);
      const i = behaviour.at - start;
      body[i] = (body[i] ?? 0) ^ 0xff;
    }
    headers['Content-Length'] = String(body.length);
    log.status = status;
    res.writeHead(status, headers);

    if (behaviour.kind === 'truncate') {
      send(body.subarray(0, behaviour.after), () => res.destroy());
      return;
    }
    if (behaviour.kind === 'stall') {
      send(body.subarray(0, behaviour.after));
      return; // keep the socket open, say nothing more
    }
    send(body);
    res.end();
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;

  return {
    base,
    url: (file = 'file') => `${base}/${file}`,
    setFile(file, data) {
      store.set(`/${file}`, { data, etag: etagFor(data) });
    },
    etagOf(file = 'file') {
      const f = store.get(`/${file}`);
      if (f === undefined) throw new Error(`no file ${file}`);
      return f.etag;
    },
    get plan() {
      return state.plan;
    },
    set plan(p: Behaviour[]) {
      state.plan = p;
    },
    get fallback() {
      return state.fallback;
    },
    set fallback(b: Behaviour) {
      state.fallback = b;
    },
    get requests() {
      return state.requests;
    },
    bytesSent: () => state.requests.reduce((n, r) => n + r.bytesSent, 0),
    reset() {
      state.plan = [];
      state.fallback = { kind: 'normal' };
      state.requests = [];
      server.closeAllConnections(); // drop stalled sockets left by the previous test
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
