// A lean HTTP/1.1 GET for the bulk bytes of a download over plain http: (a hub on the LAN, a
// mirror, a loopback front). Node's http client passes every 64 KiB socket read through its
// parser, an IncomingMessage stream and node-fetch's PassThrough, and for a big package that
// machinery, not the network, set the speed: 400 MiB read, hashed and written took 1.2–1.5 s
// through node-fetch or http.get and 0.57 s read this way (test/bench: `install`).
//
// The socket reads straight into a few reused 1 MiB buffers (net's `onread`), and the body's
// chunks are views of them, lent until the reader asks for the next chunk. So only callers
// that copy each chunk before they ask for the next may use it (`bulk: true`, see
// fetch-like.ts). One request per connection (`Connection: close`); redirects are followed,
// to plain http here and to anything else through the fallback fetch.
import net from 'node:net';
import { ChunkedBody } from './chunked-body.js';
import type { FetchLike, FetchResponseLike } from './fetch-like.js';
import { bodyFraming, isFieldName, isFieldValue, MalformedResponse, parseResponseHead, type ResponseHead } from './response-head.js';

const READ_BUFFER_BYTES = 1024 * 1024;
/** One the reader holds, one queued, one the socket reads into next. */
const READ_BUFFERS = 3;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_REDIRECTS = 20; // node-fetch's limit
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Not sent to another origin after a redirect (as node-fetch and browsers do). */
const CREDENTIALS = ['authorization', 'cookie', 'cookie2', 'www-authenticate'];

type Init = Parameters<FetchLike>[1];

/** Like a system error, so that isOutage() and logs read it as they read Node's own. */
function connectionError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The request's bytes; header names and values are checked, so none can smuggle a line in. */
function requestHead(url: URL, headers: Record<string, string>): string {
  const fields = new Map<string, string>([
    ['Host', url.host],
    ['Connection', 'close'],
    ['User-Agent', 'modelhub'],
    ['Accept', '*/*'],
  ]);
  for (const [name, value] of Object.entries(headers)) {
    if (!isFieldName(name) || !isFieldValue(value)) throw new TypeError(`invalid request header ${JSON.stringify(name)}`);
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'connection') continue;
    for (const k of fields.keys()) if (k.toLowerCase() === lower) fields.delete(k);
    fields.set(name, value);
  }
  return [`GET ${url.pathname}${url.search} HTTP/1.1`, ...[...fields].map(([k, v]) => `${k}: ${v}`)].join('\r\n') + '\r\n\r\n';
}

interface Lent {
  view: Buffer;
  owner: Buffer;
}

/** One GET on one connection: the head as a promise, then the body as lent views. */
class Exchange {
  private readonly socket: net.Socket;
  private readonly free: Buffer[] = [];
  private readonly queue: Lent[] = [];
  /** Views of each read buffer not yet given back by the reader. */
  private readonly outstanding = new Map<Buffer, number>();
  private lent: Buffer | null = null;
  private headBytes: Buffer = Buffer.alloc(0);
  private body: { kind: 'length'; left: number } | { kind: 'chunked'; decoder: ChunkedBody } | { kind: 'close' } | null = null;
  private ended = false;
  private failure: Error | null = null;
  private paused = false;
  private wake: (() => void) | null = null;
  private onHead: { resolve: (h: ResponseHead) => void; reject: (e: unknown) => void } | null = null;
  readonly head: Promise<ResponseHead>;

  constructor(url: URL, headers: Record<string, string>, signal: AbortSignal) {
    const request = requestHead(url, headers);
    this.head = new Promise<ResponseHead>((resolve, reject) => {
      this.onHead = { resolve, reject };
    });
    for (let i = 0; i < READ_BUFFERS; i++) this.free.push(Buffer.allocUnsafe(READ_BUFFER_BYTES));
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.socket = net.connect({
      host,
      port: url.port === '' ? 80 : Number(url.port),
      // Called for every read, right after the previous one's callback: one buffer is always
      // kept for it (see onRead), the allocation is only a guard.
      onread: { buffer: () => this.free.pop() ?? Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: (n, buf) => this.onRead(n, buf as Buffer) },
    });
    this.socket.setNoDelay(true);
    this.socket.once('connect', () => this.socket.write(request, 'latin1')); // obs-text bytes as they came (an ETag)
    this.socket.once('end', () => this.onEnd());
    this.socket.on('error', (err) => this.fail(err));
    // Closed with neither the body's end nor an error: node-fetch's words for the same events.
    this.socket.once('close', () =>
      this.fail(this.onHead !== null ? connectionError('ECONNRESET', 'socket hang up') : connectionError('ECONNRESET', 'the connection closed before the body ended')),
    );
    const onAbort = (): void => this.fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    this.socket.once('close', () => signal.removeEventListener('abort', onAbort));
  }

  /** The body, once the head has come. */
  chunks(): AsyncIterable<Uint8Array> {
    return { [Symbol.asyncIterator]: () => this.read() };
  }

  close(): void {
    this.socket.destroy();
  }

  private async *read(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        this.giveBack();
        const next = this.queue.shift();
        if (next !== undefined) {
          this.lent = next.owner;
          yield next.view;
          continue;
        }
        if (this.failure !== null) throw this.failure;
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      this.giveBack();
      this.socket.destroy(); // done, or the reader stopped early: either way this connection is
    }
  }

  /** The reader is done with the view it held: its buffer may be read into again. */
  private giveBack(): void {
    const owner = this.lent;
    if (owner === null) return;
    this.lent = null;
    this.release(owner);
    if (this.paused && this.free.length >= 1 && !this.socket.destroyed) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private release(buf: Buffer): void {
    const n = (this.outstanding.get(buf) ?? 0) - 1;
    if (n > 0) {
      this.outstanding.set(buf, n);
      return;
    }
    this.outstanding.delete(buf);
    if (this.free.length < READ_BUFFERS) this.free.push(buf);
  }

  private onRead(n: number, buf: Buffer): boolean {
    if (this.ended || this.failure !== null) return false;
    this.outstanding.set(buf, (this.outstanding.get(buf) ?? 0) + 1); // held while this read is parsed
    try {
      let data = buf.subarray(0, n);
      if (this.body === null) data = this.readHead(data);
      if (this.body !== null && data.length > 0) this.readBody(data, buf);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.release(buf);
    }
    this.notify();
    if (this.ended || this.failure !== null) return false;
    // The buffer for the next read is taken right after this returns: keep one for it, and
    // stop reading until the reader gives one back.
    if (this.free.length <= 1) {
      this.paused = true;
      return false;
    }
    return true;
  }

  /** Collects the head (1xx heads are skipped); returns what follows it in `data`. */
  private readHead(data: Buffer): Buffer {
    let rest = data;
    while (this.body === null && rest.length > 0) {
      const before = this.headBytes.length;
      this.headBytes = Buffer.concat([this.headBytes, rest]);
      const end = this.headBytes.indexOf('\r\n\r\n', Math.max(0, before - 3), 'latin1');
      if (end === -1) {
        if (this.headBytes.length > MAX_HEAD_BYTES) throw new MalformedResponse(`a head longer than ${MAX_HEAD_BYTES} bytes`);
        return rest.subarray(rest.length);
      }
      if (end > MAX_HEAD_BYTES) throw new MalformedResponse(`a head longer than ${MAX_HEAD_BYTES} bytes`);
      const head = parseResponseHead(this.headBytes.toString('latin1', 0, end));
      rest = rest.subarray(end + 4 - before);
      this.headBytes = Buffer.alloc(0);
      if (head.status < 200) continue; // 100 Continue, 103 Early Hints: the real answer follows
      const framing = bodyFraming(head);
      this.body = framing.kind === 'length' ? { kind: 'length', left: framing.length } : framing.kind === 'chunked' ? { kind: 'chunked', decoder: new ChunkedBody() } : { kind: 'close' };
      if (framing.kind === 'length' && framing.length === 0) this.finish();
      this.onHead?.resolve(head);
      this.onHead = null;
    }
    return rest;
  }

  private readBody(data: Buffer, owner: Buffer): void {
    const body = this.body;
    if (body === null || this.ended) return;
    let views: Buffer[];
    if (body.kind === 'length') {
      views = [data.subarray(0, Math.min(data.length, body.left))];
      body.left -= views[0]?.length ?? 0;
      if (body.left === 0) this.finish();
    } else if (body.kind === 'chunked') {
      views = body.decoder.take(data);
      if (body.decoder.done) this.finish();
    } else {
      views = [data];
    }
    for (const view of views) {
      if (view.length === 0) continue;
      this.queue.push({ view, owner });
      this.outstanding.set(owner, (this.outstanding.get(owner) ?? 0) + 1);
    }
  }

  /** The whole body is in: nothing more is read from this connection. */
  private finish(): void {
    this.ended = true;
    this.socket.destroy();
  }

  private onEnd(): void {
    if (this.body?.kind === 'close' && !this.ended) {
      this.ended = true;
      this.notify();
    }
  }

  private fail(err: Error): void {
    if (this.ended || this.failure !== null) return;
    this.failure = err;
    this.socket.destroy();
    this.onHead?.reject(this.failure);
    this.onHead = null;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

/**
 * GET `url` with lent body chunks (see the top of this file); `fallback` takes over for a
 * redirect to anything but plain http.
 */
export async function bulkGet(url: string, init: Init, fallback: FetchLike): Promise<FetchResponseLike> {
  let target = new URL(url);
  let headers = { ...init.headers };
  for (let redirects = 0; ; redirects++) {
    const ex = new Exchange(target, headers, init.signal);
    const head = await ex.head;
    const location = head.headers.get('location');
    if (!REDIRECTS.has(head.status) || location === undefined) {
      return { status: head.status, headers: { get: (name) => head.headers.get(name.toLowerCase()) ?? null }, body: ex.chunks() };
    }
    ex.close();
    if (redirects >= MAX_REDIRECTS) throw new MalformedResponse(`more than ${MAX_REDIRECTS} redirects from ${url}`);
    const next = new URL(location, target);
    if (next.origin !== target.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIALS.includes(k.toLowerCase())));
    if (next.protocol !== 'http:') return fallback(next.href, { ...init, headers });
    target = next;
  }
}
