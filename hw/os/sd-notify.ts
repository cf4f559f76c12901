/**
 * sd_notify(3) over a real unix datagram socket (NOTIFY_SOCKET), without
 * spawning systemd-notify (whose short-lived PID systemd may not attribute to
 * the service). Node has no AF_UNIX datagram support, so the `unix-dgram`
 * native addon does the socket work.
 *
 * Watchdog: when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is us),
 * `startWatchdog()` sends WATCHDOG=1 every WATCHDOG_USEC / 2.
 */
import { VigilError } from '../../base/errors.js';
import { createUnixDgramSocket } from './unix-dgram.js';
import type { UnixDgramSocket } from './unix-dgram.js';

export interface Notifier {
  /** Send raw `KEY=value` lines. */
  notify(fields: Readonly<Record<string, string>>): Promise<void>;
  ready(status?: string): Promise<void>;
  status(text: string): Promise<void>;
  stopping(): Promise<void>;
  /** Start periodic WATCHDOG=1; returns a function that stops it. No-op without WATCHDOG_USEC. */
  startWatchdog(): () => void;
  readonly watchdogIntervalMs: number | undefined;
}

/** Parse WATCHDOG_USEC/WATCHDOG_PID into a ping interval (half the timeout), or undefined. */
export function watchdogInterval(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || usec === '') return undefined;
  const n = Number(usec);
  if (!Number.isFinite(n) || n <= 0) return undefined;
  const forPid = env.WATCHDOG_PID;
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return undefined;
  return Math.max(1, Math.floor(n / 1000 / 2));
}

export class SdNotify implements Notifier {
  readonly #socketPath: string;
  readonly watchdogIntervalMs: number | undefined;

  constructor(socketPath: string, watchdogIntervalMs?: number) {
    // Abstract-namespace sockets ("@name") map to a leading NUL byte.
    this.#socketPath = socketPath.startsWith('@') ? `\0${socketPath.slice(1)}` : socketPath;
    this.watchdogIntervalMs = watchdogIntervalMs;
  }

  /** A notifier for the current environment, or a no-op one when not under systemd. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): Notifier {
    const path = env.NOTIFY_SOCKET;
    if (path === undefined || path === '') return NOOP_NOTIFIER;
    return new SdNotify(path, watchdogInterval(env));
  }

  notify(fields: Readonly<Record<string, string>>): Promise<void> {
    const lines: string[] = [];
    for (const [k, v] of Object.entries(fields)) {
      if (!/^[A-Z_]+$/.test(k) || v.includes('\n')) {
        return Promise.reject(new VigilError('ENOTIFY', `invalid sd_notify field ${k}`));
      }
      lines.push(`${k}=${v}`);
    }
    const msg = Buffer.from(lines.join('\n'), 'utf8');
    return new Promise((resolve, reject) => {
      const sock = createUnixDgramSocket();
      sock.on('error', (err) => {
        sock.close();
        reject(new VigilError('ENOTIFY', `sd_notify failed: ${err.message}`, { cause: err }));
      });
      sock.send(msg, 0, msg.length, this.#socketPath, (err) => {
        sock.close();
        if (err)
          reject(new VigilError('ENOTIFY', `sd_notify failed: ${err.message}`, { cause: err }));
        else resolve();
      });
    });
  }

  ready(status?: string): Promise<void> {
    return this.notify({
      READY: '1',
      MAINPID: String(process.pid),
      ...(status ? { STATUS: status } : {}),
    });
  }

  status(text: string): Promise<void> {
    return this.notify({ STATUS: text.replace(/\n/g, ' ') });
  }

  stopping(): Promise<void> {
    return this.notify({ STOPPING: '1' });
  }

  startWatchdog(): () => void {
    const every = this.watchdogIntervalMs;
    if (every === undefined) return () => undefined;
    const timer = setInterval(() => {
      this.notify({ WATCHDOG: '1' }).catch(() => undefined);
    }, every);
    timer.unref();
    void this.notify({ WATCHDOG: '1' }).catch(() => undefined);
    return () => {
      clearInterval(timer);
    };
  }
}

export const NOOP_NOTIFIER: Notifier = {
  notify: () => Promise.resolve(),
  ready: () => Promise.resolve(),
  status: () => Promise.resolve(),
  stopping: () => Promise.resolve(),
  startWatchdog: () => () => undefined,
  watchdogIntervalMs: undefined,
};

/** A listening notify socket (what systemd does), for tests and the dev runner. */
export class NotifyListener {
  readonly path: string;
  readonly messages: Record<string, string>[] = [];
  readonly #sock: UnixDgramSocket;
  #waiters: {
    pred: (m: Record<string, string>) => boolean;
    resolve: (m: Record<string, string>) => void;
  }[] = [];

  constructor(path: string) {
    this.path = path;
    this.#sock = createUnixDgramSocket((buf) => {
      const m: Record<string, string> = {};
      for (const line of buf.toString('utf8').split('\n')) {
        const i = line.indexOf('=');
        if (i > 0) m[line.slice(0, i)] = line.slice(i + 1);
      }
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.resolve(m);
        return false;
      });
    });
    this.#sock.bind(path);
  }

  /** Resolve with the first message (past or future) matching `pred`. */
  waitFor(
    pred: (m: Record<string, string>) => boolean,
    timeoutMs = 30_000,
  ): Promise<Record<string, string>> {
    const seen = this.messages.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        reject(new VigilError('ETIMEOUT', 'no matching sd_notify message'));
      }, timeoutMs);
      this.#waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  }

  close(): void {
    this.#sock.close();
  }
}
