// How the hub answers for stored files (hub/serve-file.ts, hub/storage-api.ts): packages and
// model files with single ranges and strong validators, signed manifests whole with an ETag.
import type { HeaderDoc, ResponseDoc } from './operation.js';

const text = { type: 'string' };

const etag: HeaderDoc = { description: 'Strong validator: the SHA-256 of the bytes, quoted.', schema: text };
/** Behind nginx (`hub serve --accel-redirect`), nginx sends the bytes of /storage/… files with its own validators. */
const rangedEtag: HeaderDoc = {
  description: "Strong validator: the SHA-256 of the bytes, quoted. Behind nginx with `hub serve --accel-redirect`, nginx's own size-mtime tag, which its Range, If-Range and If-None-Match use alike.",
  schema: text,
};
const lastModified: HeaderDoc = { description: 'When the file was stored (HTTP date).', schema: text };
const length: HeaderDoc = { description: 'The exact number of body bytes (for HEAD: of the GET body).', schema: { type: 'integer' } };

export const rangeRequestHeaders: Record<string, HeaderDoc> = {
  Range: { description: 'One range, `bytes=a-b`, `bytes=a-` or `bytes=-n`; a request with several ranges, or a malformed one, gets the whole file (200).', schema: text },
  'If-Range': { description: 'An ETag (strong comparison) or HTTP date: the Range applies only while it matches, else the whole file is sent.', schema: text },
  'If-None-Match': { description: 'ETags or `*`; a match answers 304.', schema: text },
  'If-Modified-Since': { description: 'An HTTP date, used only without If-None-Match: a file not modified since answers 304.', schema: text },
};

export const conditionalRequestHeaders: Record<string, HeaderDoc> = {
  'If-None-Match': { description: 'ETags or `*`; a match answers 304.', schema: text },
};

/** 200/206/304/416 of a stored file sent with Range support. */
export function rangedFile(mediaType: string, disposition: string): Record<number, ResponseDoc> {
  const common: Record<string, HeaderDoc> = {
    'Accept-Ranges': { description: 'Always `bytes`.', schema: { type: 'string', const: 'bytes' } },
    'Content-Length': length,
    ETag: rangedEtag,
    'Last-Modified': lastModified,
    'Content-Disposition': {
      description: `\`attachment; filename="${disposition}"\` (RFC 6266). A name that is not plain printable ASCII gets an ASCII fallback in \`filename\` (quotes, backslashes, "%", ";" and non-ASCII replaced by "_") and the exact name in \`filename*=UTF-8''…\` (RFC 8187).`,
      schema: text,
    },
  };
  return {
    200: { description: 'The whole file.', content: { [mediaType]: {} }, headers: common },
    206: {
      description: 'The requested range.',
      content: { [mediaType]: {} },
      headers: { ...common, 'Content-Range': { description: '`bytes a-b/size`.', schema: text } },
    },
    304: { description: 'If-None-Match matched the ETag (or, without it, the file is not newer than If-Modified-Since).', headers: { ETag: rangedEtag, 'Last-Modified': lastModified } },
    416: {
      description: 'The range lies outside the file.',
      errors: ['INVALID_REQUEST'],
      headers: { 'Content-Range': { description: '`bytes */size`.', schema: text } },
    },
  };
}

/** 200/304 of a small signed file, always sent whole. */
export function signedFile(mediaType: string, schema: Record<string, unknown>, what: string): Record<number, ResponseDoc> {
  return {
    200: { description: `${what}, byte for byte as signed.`, content: { [mediaType]: schema }, headers: { 'Content-Length': length, ETag: etag } },
    304: { description: 'If-None-Match matched the ETag.', headers: { ETag: etag } },
  };
}
