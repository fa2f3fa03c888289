// Lingering close (Apache's and nginx's `lingering_close`). When the hub answers an upload
// before reading all of it (a package past its signed size, a signature refused), it sends
// `Connection: close`, and Node then destroys the socket as soon as the answer is flushed. The
// client is still sending, so its next segment meets a closed socket and gets an RST back, and
// Linux drops whatever the client had received but not yet read: a client slower to read than
// to write (a busy machine) sees ECONNRESET instead of the 413 or 400 that explains why.
//
// Instead: half-close (our FIN after the answer), keep reading and dropping what the client
// still sends, and close for good when it closes its side or after `ms`.
import type { Socket } from 'node:net';

export const LINGER_MS = 2_000;

/** Makes Node's close-after-answer of this socket a lingering one. Idempotent. */
export function lingerOnClose(socket: Socket, ms = LINGER_MS): void {
  const s = socket as Socket & { lingering?: true };
  if (s.lingering === true) return;
  s.lingering = true;
  // http's server calls destroySoon() once an answer with `Connection: close` is flushed.
  s.destroySoon = function lingeringClose(this: Socket): void {
    if (this.writable) this.end();
    const timer = setTimeout(() => this.destroy(), ms);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    this.once('end', () => this.destroy());
    // Whatever still arrives is read and dropped, so the client's sends never meet an RST.
    this.removeAllListeners('data');
    this.on('data', () => undefined);
    this.resume();
  };
}
