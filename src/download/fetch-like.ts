// The one thing the downloader needs from an HTTP client. node-fetch (the default), Node's global
// fetch and Electron's net.fetch all fit: their Response has `status`, `headers.get()` and a body
// that is async-iterable in Node 20 (a Node Readable or a web ReadableStream).
import type { Readable } from 'node:stream';
import nodeFetch from 'node-fetch';
import { bulkGet } from './bulk-get.js';
import { flowingBody } from './flowing-body.js';

export interface FetchResponseLike {
  status: number;
  headers: { get(name: string): string | null };
  body: AsyncIterable<Uint8Array> | null;
}

export type FetchLike = (
  url: string,
  init: {
    method?: string;
    headers: Record<string, string>;
    signal: AbortSignal;
    /**
     * The caller reads the body chunk by chunk and is done with each chunk before it asks for
     * the next, so the fetch may lend it views of buffers it reuses (bulk-get.ts). A fetch that
     * does not know this ignores it.
     */
    bulk?: boolean;
  },
) => Promise<FetchResponseLike>;

/**
 * node-fetch, set up for file downloads: no transparent decompression (we hash and size-check
 * the bytes exactly as served) and redirects followed. A bulk GET over plain http goes through
 * bulk-get.ts instead, which reads the same bytes at about twice the speed.
 */
export function defaultFetch(): FetchLike {
  const viaNodeFetch = nodeFetchLike();
  return (url, init) => (init.bulk === true && (init.method ?? 'GET') === 'GET' && /^http:/i.test(url) ? bulkGet(url, init, viaNodeFetch) : viaNodeFetch(url, init));
}

function nodeFetchLike(): FetchLike {
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
