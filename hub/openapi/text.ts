// The document as checked-in text: keys sorted at every level so that reordering code never
// churns docs/openapi.json, 2-space indent, trailing newline.
import { buildOpenApiDocument } from './document.js';

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sorted(v)]));
}

export function stableJson(value: unknown): string {
  return JSON.stringify(sorted(value), null, 2) + '\n';
}

export function openApiText(version: string): string {
  return stableJson(buildOpenApiDocument(version));
}
