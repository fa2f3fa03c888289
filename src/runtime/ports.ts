// Port allocation for services (SPEC §2: `default_port` is only a preference).
import net from 'node:net';

function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(null));
    // exclusive: never share the port with a cluster primary; 127.0.0.1 is where services listen
    // and where health checks connect.
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const got = typeof address === 'object' && address !== null ? address.port : null;
      server.close(() => resolve(got));
    });
  });
}

function isPort(p: number | undefined): p is number {
  return p !== undefined && Number.isInteger(p) && p >= 1 && p <= 65535;
}

/**
 * `preferred` if it can be bound on 127.0.0.1 right now, else a free port the OS picks. There is
 * an unavoidable window between this check and the service binding the port; startService
 * (manager.ts) recognises a service that lost the port in that window and starts it again on
 * another one, and the health check (which also verifies the service's pid is alive) catches a
 * race lost later than that.
 */
export async function choosePort(preferred?: number): Promise<number> {
  if (isPort(preferred)) {
    const got = await tryListen(preferred);
    if (got !== null) return got;
  }
  const got = await tryListen(0);
  if (got === null) throw new Error('no free TCP port on 127.0.0.1');
  return got;
}

/** Whether `port` can be bound on 127.0.0.1 right now (false: some process listens on it). */
export async function isPortFree(port: number): Promise<boolean> {
  return isPort(port) && (await tryListen(port)) !== null;
}
