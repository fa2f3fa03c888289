// The hub's own index and its OpenAPI document, as answers (server.ts writes them).
import type { z } from 'zod';
import { json, type HubResponse } from '../response.js';
import { HUB_TITLE, type hubIndexSchema } from './schemas.js';
import { openApiText } from './text.js';

export function hubIndex(version: string): HubResponse {
  const index: z.output<typeof hubIndexSchema> = {
    name: HUB_TITLE,
    version,
    links: { openapi: '/api/openapi.json', services: '/api/services', models: '/api/models', health: '/health', keys: '/api/keys' },
  };
  return json(200, index);
}

// Built on first request, not at start: tests start many hubs and few ask for the document.
const texts = new Map<string, string>();

export function openApiDocument(version: string): HubResponse {
  let text = texts.get(version);
  if (text === undefined) {
    text = openApiText(version);
    texts.set(version, text);
  }
  return { status: 200, headers: { 'Content-Type': 'application/json; charset=utf-8' }, body: text };
}
