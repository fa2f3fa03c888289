// The lean GET for bulk bytes (src/download/bulk-get.ts) against servers that write raw bytes:
// each way a body may be framed, heads cut anywhere, early ends, redirects, refusals, aborts;
// and the pure parts (response head, chunked coding) on their own.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { bulkGet } from '../../src/download/bulk-get.js';
import { ChunkedBody } from '../../src/download/chunked-body.js';
import { defaultFetch, type FetchLike, type FetchResponseLike } from '../../src/download/fetch-like.js';
import { isOutage } from '../../src/download/network-wait.js';
import { bodyFraming, MalformedResponse, parseResponseHead } from '../../src/download/response-head.js';

type Handler = (socket: net.Socket, head: string) => void;

interface Scripted {
  url: string;
  /** Request heads as received, in order. */
  requests: string[];
  /** Resolves when the server saw the client close the connection of request `i`. */
  closed: Promise<void>[];
}

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy(); // close() would wait for them: a failed test must not hang the file
  sockets.clear();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** A server that reads each request's head, then lets `handle` write whatever bytes it likes. */
async function scripted(handle: Handler): Promise<Scripted> {
  const requests: string[] = [];
  const closed: Promise<void>[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    closed.push(new Promise((r) => socket.once('close', () => r())));
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      requests.push(got.slice(0, end));
      handle(socket, got.slice(0, end));
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, closed };
}

const noFallback: FetchLike = () => Promise.reject(new Error('the fallback was not expected'));

function get(url: string, o: { headers?: Record<string, string>; signal?: AbortSignal; fallback?: FetchLike } = {}): Promise<FetchResponseLike> {
  return bulkGet(url, { headers: o.headers ?? {}, signal: o.signal ?? new AbortController().signal, bulk: true }, o.fallback ?? noFallback);
}

/** Reads a body as streamBody does: each chunk copied before the next is asked for. */
async function readAll(res: FetchResponseLike, eachChunk?: () => Promise<void>): Promise<{ bytes: Buffer; chunks: number; buffers: Set<ArrayBufferLike> }> {
  const parts: Buffer[] = [];
  const buffers = new Set<ArrayBufferLike>();
  let chunks = 0;
  for await (const c of res.body ?? []) {
    buffers.add(c.buffer);
    parts.push(Buffer.from(c)); // a copy: the chunk is only lent
    chunks += 1;
    await eachChunk?.();
  }
  return { bytes: Buffer.concat(parts), chunks, buffers };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('bulkGet: bodies', () => {
  it('a Content-Length body read by a slow reader arrives whole, through at most three reused read buffers', async () => {
    const body = randomBytes(24 * 1024 * 1024);
    const s = await scripted((sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nETag: "x"\r\n\r\n`);
      sock.end(body);
    });
    const res = await get(`${s.url}/f?a=1`, { headers: { Range: 'bytes=0-' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('ETag')).toBe('"x"');
    expect(res.headers.get('content-length')).toBe(String(body.length));
    let n = 0;
    const r = await readAll(res, async () => {
      if (++n % 4 === 0) await new Promise((w) => setTimeout(w, 5)); // the socket fills meanwhile
    });
    expect(sha(r.bytes)).toBe(sha(body));
    // Every chunk was a view of one of the exchange's own buffers, never a fresh one per read.
    expect(r.buffers.size).toBeLessThanOrEqual(3);
    expect(r.chunks).toBeGreaterThan(3);
    const head = s.requests[0] ?? '';
    expect(head.split('\r\n')[0]).toBe('GET /f?a=1 HTTP/1.1');
    expect(head).toMatch(/\r\nRange: bytes=0-(\r\n|$)/);
    expect(head).toMatch(/\r\nConnection: close(\r\n|$)/);
    expect(head).toMatch(new RegExp(`\\r\\nHost: 127\\.0\\.0\\.1:${new URL(s.url).port}(\\r\\n|$)`));
  });

  it('a chunked body is decoded whatever the write boundaries, chunk extensions and trailers', async () => {
    const pieces = [randomBytes(1), randomBytes(70_000), randomBytes(3), randomBytes(300_000)];
    const wire = Buffer.concat([
      ...pieces.flatMap((p, i) => [Buffer.from(`${p.length.toString(16)}${i === 1 ? ';ext=1' : ''}\r\n`), p, Buffer.from('\r\n')]),
      Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'),
    ]);
    const s = await scripted((sock) => {
      sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n'); // TE wins over CL
      // The framing cut at awkward places: one byte, then odd sizes.
      let at = 0;
      const step = (): void => {
        if (at >= wire.length) return void sock.end();
        const n = at < 40 ? 1 : 65_537;
        sock.write(wire.subarray(at, at + n), step);
        at += n;
      };
      step();
    });
    const r = await readAll(await get(s.url));
    expect(sha(r.bytes)).toBe(sha(Buffer.concat(pieces)));
  });

  it('a body with neither length nor chunks runs to the close', async () => {
    const body = randomBytes(200_000);
    const s = await scripted((sock) => {
      sock.write('HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n');
      sock.end(body);
    });
    expect(sha((await readAll(await get(s.url))).bytes)).toBe(sha(body));
  });

  it('a head cut into single bytes, after a 103 Early Hints head, is read as one response', async () => {
    const wire = Buffer.from('HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/10\r\nContent-Length: 3\r\n\r\nabc');
    const s = await scripted((sock) => {
      let at = 0;
      const step = (): void => {
        if (at >= wire.length) return;
        sock.write(wire.subarray(at, at + 1), step);
        at += 1;
      };
      step();
    });
    const res = await get(s.url);
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe('bytes 0-2/10');
    expect((await readAll(res)).bytes.toString()).toBe('abc');
  });

  it('204 has an empty body, and bytes after a Content-Length body are not part of it', async () => {
    const s204 = await scripted((sock) => sock.end('HTTP/1.1 204 No Content\r\n\r\n'));
    expect((await readAll(await get(s204.url))).bytes.length).toBe(0);
    const sExtra = await scripted((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyEXTRA'));
    expect((await readAll(await get(sExtra.url))).bytes.toString()).toBe('body');
  });

  it('a connection that closes before Content-Length is reached: every byte that came, then an outage error', async () => {
    const sent = randomBytes(100_000);
    const s = await scripted((sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${sent.length + 50}\r\n\r\n`);
      sock.end(sent);
    });
    const res = await get(s.url);
    const parts: Buffer[] = [];
    const err = await (async () => {
      for await (const c of res.body ?? []) parts.push(Buffer.from(c));
    })().catch((e: unknown) => e);
    expect(sha(Buffer.concat(parts))).toBe(sha(sent));
    expect(err).toMatchObject({ code: 'ECONNRESET' });
    expect(isOutage(err)).toBe(true);
  });
});

describe('bulkGet: no answer, bad answers, aborts', () => {
  it('refused and hung-up connections reject like Node’s own client: outages', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((r) => probe.close(r));
    const refused = await get(`http://127.0.0.1:${port}/`).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isOutage(refused)).toBe(true);

    const s = await scripted((sock) => sock.end());
    const hungUp = await get(s.url).catch((e: unknown) => e);
    expect(hungUp).toMatchObject({ code: 'ECONNRESET', message: 'socket hang up' });
    expect(isOutage(hungUp)).toBe(true);
  });

  it('malformed heads are refused, not guessed at', async () => {
    for (const head of ['HTTP/1.1 2000 OK', 'HTTP/2 200', 'HTTP/1.1 200 OK\r\nBad Header: x', 'HTTP/1.1 200 OK\r\nX: a\r\n folded', 'HTTP/1.1 200 OK\r\nContent-Length: 1, 2']) {
      const s = await scripted((sock) => sock.end(`${head}\r\n\r\n`));
      const err = await get(s.url).catch((e: unknown) => e);
      expect(err, head).toBeInstanceOf(MalformedResponse);
      expect(isOutage(err), head).toBe(false);
    }
    const endless = await scripted((sock) => sock.write(`HTTP/1.1 200 OK\r\n${'X-Pad: aaaaaaaaaaaaaaaa\r\n'.repeat(4000)}`));
    await expect(get(endless.url)).rejects.toThrow(/longer than 65536 bytes/);
  });

  it('a request header that would add a line is refused before anything is sent', async () => {
    const s = await scripted((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    await expect(get(s.url, { headers: { 'X-A': 'ok\r\nX-Injected: 1' } })).rejects.toThrow(TypeError);
    await expect(get(s.url, { headers: { 'X A': 'ok' } })).rejects.toThrow(TypeError);
    expect(s.requests).toHaveLength(0);
    // obs-text is a field value all the same (an ETag a server sent may hold it): sent byte for byte.
    const res = await get(s.url, { headers: { 'If-Range': '"caf\u00e9"' } });
    await readAll(res);
    expect(s.requests[0]).toMatch(/\r\nIf-Range: "caf\u00e9"(\r\n|$)/); // the server decodes the head as latin1
  });

  it('an abort mid-body ends the read with the abort’s reason and closes the connection', async () => {
    const s = await scripted((sock) => {
      sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n');
      sock.write(randomBytes(300_000)); // then silence, the socket open
    });
    const ac = new AbortController();
    const res = await get(s.url, { signal: ac.signal });
    const why = new Error('stop here');
    let got = 0;
    const err = await (async () => {
      for await (const c of res.body ?? []) {
        got += c.length;
        if (got >= 300_000) ac.abort(why);
      }
    })().catch((e: unknown) => e);
    expect(err).toBe(why);
    await s.closed[0]; // the server saw the connection go
  });

  it('an abort before the answer rejects the request with the reason', async () => {
    const s = await scripted(() => undefined); // never answers
    const ac = new AbortController();
    const p = get(s.url, { signal: ac.signal });
    const why = new Error('gave up waiting');
    setTimeout(() => ac.abort(why), 50);
    await expect(p).rejects.toBe(why);
  });
});

describe('bulkGet: redirects', () => {
  it('follows redirects to plain http, keeps credentials on the same origin and drops them on another', async () => {
    const target = await scripted((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const origin = await scripted((sock, head) => {
      if (head.startsWith('GET /first ')) sock.end('HTTP/1.1 302 Found\r\nLocation: /second\r\nContent-Length: 0\r\n\r\n');
      else sock.end(`HTTP/1.1 307 Temporary Redirect\r\nLocation: ${target.url}/third\r\nContent-Length: 3\r\n\r\nabc`);
    });
    const res = await get(`${origin.url}/first`, { headers: { Authorization: 'Bearer t', Range: 'bytes=5-' } });
    expect(res.status).toBe(200);
    expect((await readAll(res)).bytes.toString()).toBe('ok');
    expect(origin.requests.map((h) => h.split('\r\n')[0])).toEqual(['GET /first HTTP/1.1', 'GET /second HTTP/1.1']);
    expect(origin.requests[1]).toMatch(/\r\nAuthorization: Bearer t(\r\n|$)/);
    expect(target.requests[0]?.split('\r\n')[0]).toBe('GET /third HTTP/1.1');
    expect(target.requests[0]).not.toMatch(/Authorization/i);
    expect(target.requests[0]).toMatch(/\r\nRange: bytes=5-(\r\n|$)/);
  });

  it('a redirect to https is handed to the fallback fetch; a loop ends with an error', async () => {
    const s = await scripted((sock) => sock.end('HTTP/1.1 301 Moved\r\nLocation: https://mirror.invalid/x.zip\r\nContent-Length: 0\r\n\r\n'));
    const seen: string[] = [];
    const fallback: FetchLike = (url) => {
      seen.push(url);
      return Promise.resolve({ status: 200, headers: { get: () => null }, body: null });
    };
    expect((await get(s.url, { fallback })).status).toBe(200);
    expect(seen).toEqual(['https://mirror.invalid/x.zip']);

    const loop = await scripted((sock) => sock.end('HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n'));
    await expect(get(loop.url)).rejects.toThrow(/more than 20 redirects/);
    expect(loop.requests).toHaveLength(21);
  });
});

describe('defaultFetch', () => {
  it('takes the lean path only for a bulk GET over plain http', async () => {
    const s = await scripted((sock) => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const fetch = defaultFetch();
    for (const bulk of [true, false]) {
      const res = await fetch(s.url, { headers: {}, signal: new AbortController().signal, bulk });
      expect((await readAll(res)).bytes.toString()).toBe('ok');
    }
    const agents = s.requests.map((h) => /\r\nUser-Agent: ([^\r]*)/i.exec(h)?.[1]);
    expect(agents[0]).toBe('modelhub');
    expect(agents[1]).toMatch(/node-fetch/);
  });
});

describe('response head and framing', () => {
  it('parses fields case-insensitively and joins repeats', () => {
    const h = parseResponseHead('HTTP/1.1 206 Partial Content\r\nAccept-Ranges: bytes\r\nX-A: 1\r\nx-a:  2 ');
    expect(h.status).toBe(206);
    expect(h.headers.get('accept-ranges')).toBe('bytes');
    expect(h.headers.get('x-a')).toBe('1, 2');
    expect(parseResponseHead('HTTP/1.0 200').status).toBe(200);
  });

  it('frames bodies as RFC 9112 §6.3 says', () => {
    const framing = (status: number, fields: Record<string, string>) => bodyFraming({ status, headers: new Map(Object.entries(fields)) });
    expect(framing(200, { 'content-length': '12' })).toEqual({ kind: 'length', length: 12 });
    expect(framing(200, { 'content-length': '12, 12' })).toEqual({ kind: 'length', length: 12 });
    expect(() => framing(200, { 'content-length': '12, 13' })).toThrow(MalformedResponse);
    expect(() => framing(200, { 'content-length': '-1' })).toThrow(MalformedResponse);
    expect(framing(200, { 'transfer-encoding': 'chunked', 'content-length': '3' })).toEqual({ kind: 'chunked' });
    expect(framing(200, { 'transfer-encoding': 'gzip, chunked' })).toEqual({ kind: 'chunked' });
    expect(framing(200, { 'transfer-encoding': 'chunked, gzip' })).toEqual({ kind: 'close' });
    expect(framing(200, {})).toEqual({ kind: 'close' });
    expect(framing(304, { 'content-length': '99' })).toEqual({ kind: 'length', length: 0 });
    expect(framing(204, {})).toEqual({ kind: 'length', length: 0 });
  });
});

describe('ChunkedBody', () => {
  const decode = (parts: string[]): { out: string; done: boolean } => {
    const d = new ChunkedBody();
    let out = '';
    for (const p of parts) out += d.take(Buffer.from(p, 'latin1')).map((b) => b.toString('latin1')).join('');
    return { out, done: d.done };
  };

  it('decodes across any split, and is done only after the trailer section', () => {
    const wire = '5;a=b\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n';
    for (let cut = 0; cut <= wire.length; cut++) expect(decode([wire.slice(0, cut), wire.slice(cut)])).toEqual({ out: 'hello 0123456789', done: true });
    expect(decode(['5\r\nhello\r\n0\r\n'])).toEqual({ out: 'hello', done: false });
  });

  it('refuses what is not the coding', () => {
    for (const wire of ['x\r\n', '5\nhello\r\n', '5\r\nhelloXX', '12345678901234\r\n', `${'1'.padStart(9000, '0')}\r\n`]) {
      expect(() => decode([wire]), JSON.stringify(wire.slice(0, 20))).toThrow(MalformedResponse);
    }
  });
});
