// A loopback stand-in in front of a real hub (or of nothing): the test's rules may answer a
// request themselves — rewritten, oversized, not JSON, or only after a gate opens — and every
// request no rule answers is forwarded to the hub unchanged (404 when there is no hub).
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll } from 'vitest';

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  /** The whole body, or chunks produced on demand (written with back-pressure). */
  body: Buffer | string | (() => Iterable<Buffer> | AsyncIterable<Buffer>);
}

/** Answers a request (path includes the query), or returns null to forward it. May wait first. */
export type Rule = (path: string, req: http.IncomingMessage) => Answer | null | Promise<Answer | null>;

export interface RewritingProxy {
  url: string;
  rules: Rule[];
  /** Every request's path, in arrival order. */
  requests: string[];
  /** Body bytes written for each answered or forwarded path (summed over requests). */
  sent: Map<string, number>;
  close(): Promise<void>;
}

const proxies: RewritingProxy[] = [];
afterAll(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

function count(sent: Map<string, number>, p: string, n: number): void {
  sent.set(p, (sent.get(p) ?? 0) + n);
}

async function writeAnswer(res: http.ServerResponse, a: Answer, onBytes: (n: number) => void): Promise<void> {
  res.writeHead(a.status, a.headers ?? {});
  if (typeof a.body !== 'function') {
    const b = typeof a.body === 'string' ? Buffer.from(a.body, 'utf8') : a.body;
    res.end(b);
    onBytes(b.length);
    return;
  }
  for await (const chunk of a.body()) {
    if (res.destroyed || res.writableEnded) return;
    onBytes(chunk.length);
    if (!res.write(chunk)) {
      // Back-pressure: wait until the client reads on, or goes away.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done).off('close', done);
          resolve();
        };
        res.on('drain', done).on('close', done);
      });
    }
  }
  if (!res.destroyed) res.end();
}

export async function startRewritingProxy(target: string | null): Promise<RewritingProxy> {
  const t = target === null ? null : new URL(target);
  const sockets = new Set<Socket>();
  const state: RewritingProxy = {
    url: '',
    rules: [],
    requests: [],
    sent: new Map(),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };

  const server = http.createServer((req, res) => {
    const p = req.url ?? '/';
    state.requests.push(p);
    void (async () => {
      for (const rule of state.rules) {
        const a = await rule(p, req);
        if (a !== null) {
          req.resume();
          await writeAnswer(res, a, (n) => count(state.sent, p, n));
          return;
        }
      }
      if (t === null) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ success: false, error: 'NOT_FOUND', message: 'no hub behind this proxy' }));
        return;
      }
      const up = http.request({ host: t.hostname, port: t.port, path: p, method: req.method, headers: { ...req.headers, host: t.host } }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.on('data', (c: Buffer) => count(state.sent, p, c.length));
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    })().catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxies.push(state);
  return state;
}

/** A gate a rule can wait at: `wait()` resolves once `open()` is called. */
export function gate(): { wait: () => Promise<void>; open: () => void; waiting: () => number } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  let waiting = 0;
  return {
    wait: async () => {
      waiting++;
      await opened;
    },
    open: () => open(),
    waiting: () => waiting,
  };
}
