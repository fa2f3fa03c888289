// `modelhub/client`: the typed renderer-side API, shared by the Electron preload and the local
// page. Browser-safe: no Node or Electron imports.
export * from './types.js';
export { createHttpClient, TOKEN_HEADER, type HttpClientOptions } from './http.js';
