// Which bytes of the file each connection fetches. The file is cut into pieces that together
// cover it; each piece is fetched by at most one connection, front to back, with a request for
// exactly that piece. A download in segments starts cut into as many pieces as it may have
// connections, so that a connection added later takes a piece of its own and no response has to
// be cut short (what a cut response had in flight was served for nothing). A connection that
// runs out of pieces takes the upper half of the piece that would finish last (work stealing), so
// a slow connection does not set the finish time: its piece just ends earlier. Saved in the
// sidecar, the pieces let every one of them resume from its own offset after a crash.
import type { SavedPiece } from './sidecar.js';

export interface Piece {
  start: number;
  /** Bytes [start, pos) are written to the part. */
  pos: number;
  /** Bytes [start, recv) are received (written, or in a write buffer): pos ≤ recv ≤ end. */
  recv: number;
  /** Exclusive. Moves down when another connection takes the upper part of the piece. */
  end: number;
  /** The connection fetching it, or null. */
  owner: number | null;
  /** While the owner reads a response: where that response ends (how far a split can be undone). */
  respEnd: number;
  /** The piece this one was split from, until this one has bytes. */
  splitFrom: Piece | null;
  /** When the owner's current response started to deliver, and `recv` then: the piece's speed. */
  since: number;
  base: number;
  /** Time the owner's current response spent waiting for bytes. */
  idle: number;
}

/** Split points are rounded to this, so that writes stay aligned to pages. */
const ALIGN = 64 * 1024;
/**
 * A piece is split only while its owner would need this long for the rest, and only while that
 * owner waits for the network most of the time. Splitting costs the bytes its connection has in
 * flight past the split point: next to nothing when the network is the slow end, a whole receive
 * window (MiBs) when this machine is, and then another connection would not be faster anyway.
 */
export const MIN_STEAL_MS = 500;
const MIN_STEAL_IDLE_SHARE = 0.5;
/** Speed is judged over at least this much of a response. */
const MIN_SPEED_WINDOW_MS = 250;

function piece(start: number, pos: number, end: number): Piece {
  return { start, pos, recv: pos, end, owner: null, respEnd: 0, splitFrom: null, since: 0, base: pos, idle: 0 };
}

export class Plan {
  private pieces: Piece[];
  /** Splits made (work stealing, and each connection the ramp added). */
  splits = 0;

  private constructor(
    readonly size: number,
    saved: readonly SavedPiece[],
  ) {
    this.pieces = saved.map(([s, p, e]) => piece(s, p, e));
  }

  /** The whole file as one piece, its first `pos` bytes on disk. */
  static whole(size: number, pos = 0): Plan {
    return new Plan(size, [[0, Math.min(pos, size), size]]);
  }

  /** Saved pieces, if they are a consistent cover of [0, size); else null. */
  static fromSaved(size: number, saved: readonly SavedPiece[]): Plan | null {
    let at = 0;
    for (const [s, p, e] of saved) {
      if (s !== at || p < s || e < p) return null;
      at = e;
    }
    return at === size && saved.length > 0 ? new Plan(size, saved) : null;
  }

  reset(): void {
    this.pieces = [piece(0, 0, this.size)];
  }

  /** Cuts what nobody fetches yet into pieces of about `size` bytes (page-aligned; no tiny tails). */
  cut(size: number): void {
    const out: Piece[] = [];
    for (const p of this.pieces) {
      if (p.owner !== null || p.end - p.pos < 2 * size) {
        out.push(p);
        continue;
      }
      let at = Math.ceil((p.pos + size) / ALIGN) * ALIGN;
      out.push(piece(p.start, p.pos, at));
      for (; p.end - at >= 2 * size; at += size) out.push(piece(at, at, at + size));
      out.push(piece(at, at, p.end));
    }
    this.pieces = out;
  }

  done(): boolean {
    return this.pieces.every((p) => p.pos === p.end);
  }

  received(): number {
    return this.pieces.reduce((n, p) => n + (p.recv - p.start), 0);
  }

  written(): number {
    return this.pieces.reduce((n, p) => n + (p.pos - p.start), 0);
  }

  /** The ranges [start, pos) that hold bytes. */
  writtenRanges(): [number, number][] {
    return this.pieces.filter((p) => p.pos > p.start).map((p) => [p.start, p.pos]);
  }

  /** The highest offset any piece claims to have written. */
  highestWritten(): number {
    return this.pieces.reduce((n, p) => (p.pos > p.start ? Math.max(n, p.pos) : n), 0);
  }

  /** Claims the first piece nobody fetches that still has bytes to fetch. */
  take(owner: number): Piece | null {
    const p = this.pieces.find((x) => x.owner === null && x.recv < x.end);
    if (p === undefined) return null;
    p.owner = owner;
    return p;
  }

  /**
   * The fetched piece that would finish last at its own speed, if it is worth splitting: each
   * half gets at least `minSplit` bytes, and its owner would need MIN_STEAL_MS or more and waits
   * for the network most of the time. A piece whose speed is not known yet (its response just
   * started) is left alone: a fast connection's first moments look like a straggler's.
   */
  stealable(minSplit: number, now: number): Piece | null {
    let best: Piece | null = null;
    let bestMs = -1;
    for (const p of this.pieces) {
      const left = p.end - p.recv;
      if (p.owner === null || left < 2 * minSplit) continue;
      const speed = speedOf(p, now);
      if (speed === null || p.idle < MIN_STEAL_IDLE_SHARE * (now - p.since)) continue;
      const ms = speed <= 0 ? Number.POSITIVE_INFINITY : (left * 1000) / speed;
      if (ms < MIN_STEAL_MS) continue;
      if (ms > bestMs || (ms === bestMs && best !== null && left > best.end - best.recv)) {
        best = p;
        bestMs = ms;
      }
    }
    return best;
  }

  /** Takes the upper half of the piece that would finish last for `owner`. */
  split(owner: number, minSplit: number, now: number): Piece | null {
    const v = this.stealable(minSplit, now);
    if (v === null) return null;
    let mid = v.recv + Math.ceil((v.end - v.recv) / 2);
    const aligned = Math.ceil(mid / ALIGN) * ALIGN;
    if (aligned - v.recv >= minSplit && v.end - aligned >= minSplit) mid = aligned;
    const p = piece(mid, mid, v.end);
    p.owner = owner;
    p.splitFrom = v;
    v.end = mid;
    this.pieces.splice(this.pieces.indexOf(v) + 1, 0, p);
    this.splits += 1;
    return p;
  }

  /**
   * Gives a split piece back to the piece it came from, when that one's owner still reads a
   * response that covers it (the server turned out to ignore Range for the new connection).
   */
  undoSplit(p: Piece): boolean {
    const v = p.splitFrom;
    if (v === null || p.recv !== p.start || v.end !== p.start || v.owner === null || v.recv >= v.end || v.respEnd < p.end) return false;
    v.end = p.end;
    this.pieces.splice(this.pieces.indexOf(p), 1);
    return true;
  }

  release(p: Piece): void {
    p.owner = null;
    p.respEnd = 0;
    p.since = 0;
    p.recv = p.pos; // bytes received but never written are fetched again by the next owner
  }

  /** For the sidecar: what is written, complete pieces merged into the one after them. */
  saved(): SavedPiece[] {
    const out: SavedPiece[] = [];
    for (const p of this.pieces) {
      const last = out[out.length - 1];
      if (last !== undefined && last[1] === last[2] && last[2] === p.start) {
        last[1] = p.pos;
        last[2] = p.end;
      } else {
        out.push([p.start, p.pos, p.end]);
      }
    }
    return out;
  }
}

/** Bytes per second of the owner's current response, once it has run long enough to tell. */
function speedOf(p: Piece, now: number): number | null {
  if (p.owner === null || p.respEnd === 0 || p.since === 0 || now - p.since < MIN_SPEED_WINDOW_MS) return null;
  return ((p.recv - p.base) * 1000) / (now - p.since);
}
