// Port choice: default_port is a preference, never a requirement.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { choosePort } from '../../src/runtime/ports.js';

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

function portOf(s: net.Server): number {
  const a = s.address();
  return typeof a === 'object' && a !== null ? a.port : 0;
}

describe('choosePort', () => {
  it('returns a free port from the OS without a preference', async () => {
    const p = await choosePort();
    expect(p).toBeGreaterThan(0);
    const s = await listen(p); // it really is free
    s.close();
  });

  it('returns the preferred port when it is free, another one when it is taken', async () => {
    const free = await choosePort();
    expect(await choosePort(free)).toBe(free);
    const blocker = await listen(0);
    try {
      const taken = portOf(blocker);
      const other = await choosePort(taken);
      expect(other).not.toBe(taken);
      expect(other).toBeGreaterThan(0);
    } finally {
      blocker.close();
    }
  });

  it('ignores a preference that is not a port', async () => {
    for (const bad of [0, -1, 65536, 1.5, Number.NaN]) expect(await choosePort(bad)).toBeGreaterThan(0);
  });
});
