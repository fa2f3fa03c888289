// An HTTP/1.1 response head (RFC 9112 §4, §5), parsed strictly: anything this file cannot read
// exactly is an error, never a guess. Also how the body that follows is framed (RFC 9112 §6.3).

export interface ResponseHead {
  status: number;
  /** Lower-case names; repeated fields joined with ", " (RFC 9110 §5.3), as fetch's Headers does. */
  headers: Map<string, string>;
}

/** How the body after a head ends: at a length, at the last chunk, at the connection's close, or at once. */
export type BodyFraming = { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

export class MalformedResponse extends Error {
  /** Node's http parser errors carry an HPE_ code; so do these, so they read alike in logs. */
  readonly code = 'HPE_INVALID_RESPONSE';
  constructor(why: string) {
    super(`malformed HTTP response: ${why}`);
    this.name = 'MalformedResponse';
  }
}

const STATUS_LINE = /^HTTP\/1\.[01] ([1-9]\d\d)(?: [^\r\n]*)?$/;
// RFC 9110 §5.1 field-name = token; §5.5 field-value: visible characters (obs-text too), spaces
// and tabs, never CR, LF or NUL. The same rules for the requests we write (bulk-get.ts).
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const FIELD_NAME = new RegExp(`^${TOKEN}$`);
const FIELD_LINE = new RegExp(`^(${TOKEN}):[ \\t]*([^\\r\\n]*?)[ \\t]*$`);
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export function isFieldName(s: string): boolean {
  return FIELD_NAME.test(s);
}

export function isFieldValue(s: string): boolean {
  return FIELD_VALUE.test(s);
}

/** The head's text, from the status line to the last field line (without the blank line). */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const m = STATUS_LINE.exec(lines[0] ?? '');
  if (m === null) throw new MalformedResponse(`status line ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    // §5.2: obsolete line folding may be rejected; a line that is no field is not guessed at.
    const f = FIELD_LINE.exec(line);
    if (f === null || !FIELD_VALUE.test(f[2] ?? '')) throw new MalformedResponse(`field line ${JSON.stringify(line.slice(0, 80))}`);
    const name = (f[1] ?? '').toLowerCase();
    const value = f[2] ?? '';
    const had = headers.get(name);
    headers.set(name, had === undefined ? value : `${had}, ${value}`);
  }
  return { status: Number(m[1]), headers };
}

/** RFC 9112 §6.3, for the answer to a GET. */
export function bodyFraming(head: ResponseHead): BodyFraming {
  const { status, headers } = head;
  if (status < 200 || status === 204 || status === 304) return { kind: 'length', length: 0 };
  const te = headers.get('transfer-encoding');
  if (te !== undefined) {
    // Transfer-Encoding overrides Content-Length (§6.3 item 3). Chunked last: the chunks frame
    // the body (any coding under it is passed on as served, as node-fetch with compress: false
    // does); otherwise the body runs to the close (§6.3 item 4).
    const codings = te.split(',').map((c) => c.trim().toLowerCase());
    return codings.at(-1) === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  const cl = headers.get('content-length');
  if (cl !== undefined) {
    // Repeated fields of one value are allowed (§6.3 item 5); differing ones are not.
    const values = new Set(cl.split(',').map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) throw new MalformedResponse(`Content-Length ${JSON.stringify(cl)}`);
    return { kind: 'length', length: Number(only) };
  }
  return { kind: 'close' };
}
