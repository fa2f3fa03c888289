// The API over the local page server (`modelhub ui`): what the page itself uses, and what any
// other local client can use with the page's token. It imports nothing but ./types.js, so the
// page server can hand the compiled file to the browser as it is.
import { MODELHUB_METHODS, type JobStateEvent, type ModelhubApi, type ModelhubMethod, type ModelhubResult, type ProgressEvent } from './types.js';

export interface HttpClientOptions {
  /** The page server, e.g. http://127.0.0.1:8790; default: the page's own origin. */
  base?: string;
  /** The per-launch token the page carries (the `modelhub-token` meta tag). */
  token: string;
  fetch?: typeof globalThis.fetch;
}

export const TOKEN_HEADER = 'x-modelhub-token';
/** After a dropped event stream, wait this long before reconnecting. */
const RECONNECT_MS = 1000;

type Listener = (event: string, data: unknown) => void;

/** Server-sent events read through fetch, because EventSource cannot send the token header. */
function openEventStream(o: { url: string; token: string; fetch: typeof globalThis.fetch; onEvent: Listener }): () => void {
  const abort = new AbortController();
  const run = async (): Promise<void> => {
    while (!abort.signal.aborted) {
      try {
        const res = await o.fetch(o.url, { headers: { [TOKEN_HEADER]: o.token, accept: 'text/event-stream' }, signal: abort.signal });
        if (res.ok && res.body !== null) {
          const reader: ReadableStreamDefaultReader<Uint8Array> = res.body.getReader();
          const decoder = new TextDecoder();
          let buffer = '';
          for (;;) {
            const chunk = await reader.read();
            if (chunk.done) break;
            buffer += decoder.decode(chunk.value, { stream: true });
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              let event = 'message';
              const data: string[] = [];
              for (const line of block.split('\n')) {
                if (line.startsWith('event: ')) event = line.slice(7);
                else if (line.startsWith('data: ')) data.push(line.slice(6));
              }
              if (data.length > 0) o.onEvent(event, JSON.parse(data.join('\n')) as unknown);
            }
          }
        }
      } catch {
        // a dropped connection: reconnect below unless closed
      }
      if (!abort.signal.aborted) await new Promise((r) => setTimeout(r, RECONNECT_MS));
    }
  };
  void run();
  return () => abort.abort();
}

export function createHttpClient(o: HttpClientOptions): ModelhubApi {
  const base = (o.base ?? '').replace(/\/+$/, '');
  const doFetch = o.fetch ?? globalThis.fetch.bind(globalThis);
  const call = (method: ModelhubMethod) => async (...args: unknown[]): Promise<ModelhubResult<unknown>> => {
    try {
      const res = await doFetch(`${base}/api/call/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [TOKEN_HEADER]: o.token },
        body: JSON.stringify({ args }),
      });
      const body = (await res.json()) as ModelhubResult<unknown> | { success: false; error: string; message: string; details?: Record<string, unknown> };
      if ('ok' in body) return body;
      return { ok: false, error: { code: body.error, message: body.message, details: body.details ?? {} } };
    } catch (err) {
      return { ok: false, error: { code: 'NETWORK_ERROR', message: err instanceof Error ? err.message : String(err), details: {} } };
    }
  };

  const progress = new Set<(e: ProgressEvent) => void>();
  const jobState = new Set<(e: JobStateEvent) => void>();
  let close: (() => void) | null = null;
  const ensureStream = (): void => {
    if (progress.size + jobState.size === 0) {
      close?.();
      close = null;
    } else if (close === null) {
      close = openEventStream({
        url: `${base}/api/events`,
        token: o.token,
        fetch: doFetch,
        onEvent: (event, data) => {
          if (event === 'progress') for (const cb of [...progress]) cb(data as ProgressEvent);
          if (event === 'job') for (const cb of [...jobState]) cb(data as JobStateEvent);
        },
      });
    }
  };
  const subscribe = <T>(set: Set<(e: T) => void>, cb: (e: T) => void): (() => void) => {
    const entry = (e: T): void => cb(e);
    set.add(entry);
    ensureStream();
    return () => {
      set.delete(entry);
      ensureStream();
    };
  };

  const api: Record<string, unknown> = {};
  for (const method of MODELHUB_METHODS) api[method] = call(method);
  api.onProgress = (cb: (e: ProgressEvent) => void) => subscribe(progress, cb);
  api.onJobState = (cb: (e: JobStateEvent) => void) => subscribe(jobState, cb);
  return api as unknown as ModelhubApi;
}
