// A loopback proxy in front of a real hub that counts what it serves and, when told, misbehaves
// on package downloads the way a hostile or broken server would: per-connection rate caps, a
// timed network blackout, a flipped byte (every time, or once). Free of vitest, so that the
// benchmarks use it too; tests start it through proxy.ts, which closes it after the file.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Misbehaviour =
  | { kind: 'none' }
  /** Flip the byte at file offset `at`; with `once`, only in the first response that carries it. */
  | { kind: 'flip'; at: number; once?: boolean }
  | { kind: 'truncate'; after: number }
  | { kind: 'extend'; extra: number }
  | { kind: 'ignore-range' }
  | { kind: 'swap-manifest'; from: string }
  | { kind: 'stall'; after: number };

export interface Proxy {
  url: string;
  mode: Misbehaviour;
  /** Bytes of package bodies sent, and requests, per path. */
  bytes: Map<string, number>;
  requests: Map<string, number>;
  /** Bytes per second for each package response (each connection on its own); 0 = unlimited. */
  rate: number;
  /** Caps for the next package responses, one each, in order (then `rate`): e.g. `[1e6]` slows only the first connection. */
  rates: number[];
  /** Every package response: the Range asked for, the status, the body bytes sent, when it started and ended (ms). */
  log: { path: string; range: string | undefined; status: number; bytes: number; start: number; end: number | null }[];
  /** Most package responses open at the same time (reset it by assigning 0). */
  peak: number;
  /**
   * A network outage for `ms`: open connections are reset at once, and new ones are reset as
   * soon as they are accepted ('reset') or refused because nothing listens ('refuse').
   */
  blackout(ms: number, how?: 'reset' | 'refuse'): void;
  /** A blackout is on. */
  readonly dark: boolean;
  /** Paths answered with these bytes instead of the hub's (a hostile release). */
  substitute: Map<string, Buffer>;
  /** Paths answered with 503, as if that part of the hub were down. */
  down: Set<string>;
  /**
   * A barrier: from now on, requests for `path` wait here (counted in `requests`, nothing asked
   * of the hub yet) until `release(path)`, then go on as usual. Lets a test hold a download
   * until it has seen what it waits for, instead of hoping a slow transfer lasts long enough.
   */
  hold(path: string): void;
  /** Lets every request waiting at `path`'s hold go on, and stops holding `path`. */
  release(path: string): void;
  /** Requests waiting at `path`'s hold right now. */
  held(path: string): number;
  close(): Promise<void>;
}

function isPackage(p: string): boolean {
  return p.startsWith('/storage/');
}

/** A proxy in front of `target`; the caller closes it (tests: use startProxy from proxy.ts). */
export async function startProxyServer(target: string): Promise<Proxy> {
  const t = new URL(target);
  const sockets = new Set<import('node:net').Socket>();
  const holds = new Map<string, (() => void)[]>();
  let darkUntil = 0;
  let port = 0;
  let closed = false;
  let openResponses = 0;
  const state: Proxy = {
    url: '',
    mode: { kind: 'none' },
    bytes: new Map(),
    requests: new Map(),
    rate: 0,
    rates: [],
    log: [],
    peak: 0,
    blackout(ms, how = 'reset') {
      darkUntil = Date.now() + ms;
      for (const s of sockets) s.resetAndDestroy();
      if (how === 'refuse') {
        server.close();
        setTimeout(() => {
          if (!closed) server.listen(port, '127.0.0.1');
        }, ms).unref();
      }
    },
    get dark() {
      return Date.now() < darkUntil;
    },
    substitute: new Map(),
    down: new Set(),
    hold(p) {
      if (!holds.has(p)) holds.set(p, []);
    },
    release(p) {
      const waiting = [...(holds.get(p) ?? [])];
      holds.delete(p);
      for (const go of waiting) go();
    },
    held: (p) => holds.get(p)?.length ?? 0,
    close: () =>
      new Promise((resolve) => {
        closed = true;
        for (const p of [...holds.keys()]) state.release(p);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };

  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const p = url.split('?')[0] ?? url;
    state.requests.set(p, (state.requests.get(p) ?? 0) + 1);
    const waiting = holds.get(p);
    if (waiting !== undefined) {
      // The request body (none for a GET) stays unread until then, so piping it later still works.
      const go = (): void => {
        const i = waiting.indexOf(go);
        if (i >= 0) waiting.splice(i, 1);
        if (!res.destroyed) serve(req, res, url, p);
      };
      waiting.push(go);
      // A client that gave up while held leaves the barrier.
      res.on('close', () => {
        const i = waiting.indexOf(go);
        if (i >= 0) waiting.splice(i, 1);
      });
      return;
    }
    serve(req, res, url, p);
  });

  function serve(req: http.IncomingMessage, res: http.ServerResponse, url: string, p: string): void {
    const mode = state.mode;
    if (state.down.has(p)) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success: false, error: 'INTERNAL', message: 'down for the test', details: {}, timestamp: new Date().toISOString() }));
      return;
    }
    const fake = state.substitute.get(p);
    if (fake !== undefined) {
      const etag = `"${createHash('sha256').update(fake).digest('hex')}"`;
      res.writeHead(200, { 'content-length': fake.length, etag, 'content-type': 'application/octet-stream' });
      res.end(req.method === 'HEAD' ? undefined : fake);
      if (isPackage(p)) state.bytes.set(p, (state.bytes.get(p) ?? 0) + fake.length);
      return;
    }
    let upstreamPath = url;
    if (mode.kind === 'swap-manifest' && (p.endsWith('/manifest') || p.endsWith('/manifest.minisig'))) {
      upstreamPath = url.replace(/\/api\/services\/([^/]+)\/([^/]+)\//, `/api/services/$1/${mode.from}/`);
    }
    const headers: Record<string, string | string[] | undefined> = { ...req.headers, host: t.host };
    if (mode.kind === 'ignore-range' && isPackage(p)) {
      delete headers.range;
      delete headers['if-range'];
    }
    const up = http.request({ host: t.hostname, port: t.port, path: upstreamPath, method: req.method, headers }, (ur) => {
      const out = { ...ur.headers };
      if (!isPackage(p)) {
        res.writeHead(ur.statusCode ?? 502, out);
        ur.pipe(res);
        return;
      }
      if (mode.kind === 'extend' && ur.statusCode === 200) out['content-length'] = String(Number(out['content-length'] ?? 0) + mode.extra);
      // Truncation keeps the honest Content-Length: the client must see the body end early.
      res.writeHead(ur.statusCode ?? 502, out);
      const entry = { path: p, range: typeof req.headers.range === 'string' ? req.headers.range : undefined, status: ur.statusCode ?? 502, bytes: 0, start: Date.now(), end: null as number | null };
      state.log.push(entry);
      openResponses += 1;
      state.peak = Math.max(state.peak, openResponses);
      res.on('close', () => {
        openResponses -= 1;
        entry.end = Date.now();
      });
      const fixedRate = state.rates.shift();
      const rateNow = (): number => fixedRate ?? state.rate;
      let sent = 0;
      let offset = 0;
      const startOffset = Number(/^bytes (\d+)-/.exec(String(ur.headers['content-range'] ?? ''))?.[1] ?? 0);
      const started = Date.now();
      // A client that went away (killed) stops the transfer: only bytes handed to a live
      // socket are counted as served.
      res.on('close', () => ur.destroy());
      ur.on('data', (chunk: Buffer) => {
        if (res.destroyed || res.writableEnded) return;
        let data = chunk;
        if (mode.kind === 'flip') {
          const at = mode.at - startOffset - offset;
          if (at >= 0 && at < data.length) {
            data = Buffer.from(data);
            data[at] = data[at]! ^ 0xff;
            if (mode.once === true) state.mode = { kind: 'none' };
          }
        }
        if ((mode.kind === 'truncate' || mode.kind === 'stall') && sent + data.length > mode.after) {
          data = data.subarray(0, Math.max(0, mode.after - sent));
          sent += data.length;
          entry.bytes += data.length;
          state.bytes.set(p, (state.bytes.get(p) ?? 0) + data.length);
          ur.destroy();
          // Cut the connection only once the partial body has reached the socket.
          res.write(data, () => {
            if (mode.kind === 'truncate') res.socket?.destroy();
          });
          return;
        }
        offset += chunk.length;
        sent += data.length;
        entry.bytes += data.length;
        state.bytes.set(p, (state.bytes.get(p) ?? 0) + data.length);
        const ok = res.write(data);
        const rate = rateNow();
        const wait = rate > 0 ? started + (sent / rate) * 1000 - Date.now() : 0;
        // Paced at the cap, and never ahead of what the client reads (like a real server's
        // socket): bytes counted as served are bytes that left, not bytes queued here.
        if (!ok || wait > 0) {
          ur.pause();
          let draining = !ok;
          let pacing = wait > 0;
          const go = (): void => {
            if (!draining && !pacing) ur.resume();
          };
          if (draining) {
            res.once('drain', () => {
              draining = false;
              go();
            });
          }
          if (pacing) {
            setTimeout(() => {
              pacing = false;
              go();
            }, wait);
          }
        }
      });
      ur.on('end', () => {
        if (mode.kind === 'extend' && ur.statusCode === 200) {
          res.write(Buffer.alloc(mode.extra, 0x41));
          state.bytes.set(p, (state.bytes.get(p) ?? 0) + mode.extra);
        }
        res.end();
      });
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  }
  server.on('connection', (s) => {
    if (Date.now() < darkUntil) {
      s.resetAndDestroy(); // the network is away: no HTTP answer at all
      return;
    }
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${port}`;
  return state;
}
