/**
 * Typed access to AF_UNIX datagram sockets (Node has none built in) through
 * the `unix-dgram` addon, built from source at install time, so it works on
 * every architecture Vigil runs on (x64 for tests, arm64 on the Pi). Used by
 * sd_notify and by the hostapd / wpa_supplicant control-socket client.
 */
import { createRequire } from 'node:module';

export interface UnixDgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb?: (err?: Error) => void): void;
  bind(path: string): void;
  close(): void;
  on(event: 'error', cb: (err: Error) => void): void;
  /** `from.path` is the sender's bound path (absent for unbound senders). */
  on(event: 'message', cb: (msg: Buffer, from: { size: number; path?: string }) => void): void;
}

interface UnixDgramModule {
  createSocket(type: 'unix_dgram', onMessage?: (msg: Buffer) => void): UnixDgramSocket;
}

const require = createRequire(import.meta.url);

/** A new unbound datagram socket; `onMessage` receives every datagram once bound. */
export function createUnixDgramSocket(onMessage?: (msg: Buffer) => void): UnixDgramSocket {
  const mod = require('unix-dgram') as UnixDgramModule;
  return mod.createSocket('unix_dgram', onMessage);
}
