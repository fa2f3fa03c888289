// A port free on 127.0.0.1 right now, for servers that cannot report a port-0 bind (nginx,
// PostgreSQL). Another process may take it before the server binds: callers retry on that.
import net from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
