// The one thing the downloader needs from an HTTP client. node-fetch (the default), Node's global
// fetch and Electron's net.fetch all fit: their Response has `status`, `headers.get()` and a body
// that is async-iterable in Node 20 (a Node Readable or a web ReadableStream).
import type { Readable } from 'node:stream';
import nodeFetch from 'node-fetch';
import { flowingBody } from './flowing-body.js';

export interface FetchResponseLike {
  status: number;
  headers: { get(name: string): string | null };
  body: AsyncIterable<Uint8Array> | null;
}

export type FetchLike = (
  url: string,
  init: { method?: string; headers: Record<string, string>; signal: AbortSignal },
) => Promise<FetchResponseLike>;

/**
 * node-fetch, set up for file downloads: no transparent decompression (we hash and size-check
 * the bytes exactly as served) and redirects followed.
 */
export function defaultFetch(): FetchLike {
  return async (url, init) => {
    const res = await nodeFetch(url, {
      method: init.method ?? 'GET',
      headers: init.headers,
      signal: init.signal,
      compress: false,
      redirect: 'follow',
    });
    return {
      status: res.status,
      headers: res.headers,
      body: res.body === null ? null : flowingBody(res.body as Readable),
    };
  };
}
