/**
 * Server sockets. `listen` is the one place that turns `server.listen` (an
 * 'error' event or a callback) into a promise, for every Vigil server: relay,
 * viewer, OTA static server, pairing server, media motion socket.
 */
import type { ListenOptions, Server } from 'node:net';

/**
 * Start `server` listening (TCP `{ host, port }`, or a Unix socket `{ path }`).
 * Resolves once it listens; rejects with the listen error (EADDRINUSE,
 * EACCES, ...) and leaves no listener behind either way.
 */
export function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(err);
    };
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
