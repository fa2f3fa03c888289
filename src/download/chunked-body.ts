// The chunked transfer coding (RFC 9112 §7.1), decoded incrementally and without copying: the
// body bytes come out as views of the buffers that went in.
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
import { MalformedResponse } from './response-head.js';

/** A chunk-size line or a trailer field longer than this is not an honest server's. */
const MAX_LINE = 8 * 1024;
// 13 hex digits: sizes below 2^52 stay exact numbers.
const SIZE_LINE = /^([0-9A-Fa-f]{1,13})[ \t]*(?:;[^\r\n]*)?$/;

type State = 'size' | 'data' | 'data-cr' | 'data-lf' | 'trailer' | 'done';

export class ChunkedBody {
  private state: State = 'size';
  private line = '';
  private left = 0;

  /** The last chunk and the trailer section are read. */
  get done(): boolean {
    return this.state === 'done';
  }

  /** The body bytes in `input`, as views of it; bytes after the end of the body are ignored. */
  take(input: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let i = 0;
    while (i < input.length && this.state !== 'done') {
      if (this.state === 'data') {
        const n = Math.min(this.left, input.length - i);
        out.push(input.subarray(i, i + n));
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = 'data-cr';
      } else if (this.state === 'data-cr' || this.state === 'data-lf') {
        const want = this.state === 'data-cr' ? 0x0d : 0x0a;
        if (input[i] !== want) throw new MalformedResponse('chunk data not followed by CRLF');
        i += 1;
        this.state = this.state === 'data-cr' ? 'data-lf' : 'size';
      } else {
        const nl = input.indexOf(0x0a, i);
        const end = nl === -1 ? input.length : nl;
        this.line += input.toString('latin1', i, end);
        if (this.line.length > MAX_LINE) throw new MalformedResponse(`a chunk line longer than ${MAX_LINE} bytes`);
        if (nl === -1) return out;
        i = nl + 1;
        if (!this.line.endsWith('\r')) throw new MalformedResponse('a chunk line ended by a bare LF');
        this.lineDone(this.line.slice(0, -1));
        this.line = '';
      }
    }
    return out;
  }

  private lineDone(line: string): void {
    if (this.state === 'trailer') {
      // Trailer fields carry nothing the downloader reads; the empty line ends the body.
      if (line === '') this.state = 'done';
      return;
    }
    const m = SIZE_LINE.exec(line);
    if (m === null) throw new MalformedResponse(`chunk size ${JSON.stringify(line.slice(0, 40))}`);
    this.left = Number.parseInt(m[1] ?? '', 16);
    this.state = this.left === 0 ? 'trailer' : 'data';
  }
}
