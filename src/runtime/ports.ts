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

/**
 * `preferred` if it can be bound on 127.0.0.1 right now, else a free port the OS picks. There is
 * an unavoidable window between this check and the service binding the port; the health check
 * (which also verifies the service's pid is alive) catches a lost race.
 */
export async function choosePort(preferred?: number): Promise<number> {
  if (preferred !== undefined && Number.isInteger(preferred) && preferred >= 1 && preferred <= 65535) {
    const got = await tryListen(preferred);
    if (got !== null) return got;
  }
  const got = await tryListen(0);
  if (got === null) throw new Error('no free TCP port on 127.0.0.1');
  return got;
}
