/**
 * Client for the hostapd / wpa_supplicant control interface: a Unix datagram
 * socket per interface (ctrl_interface=DIR -> DIR/<ifname>). Requests are
 * text commands answered by one datagram; after ATTACH the daemon also sends
 * unsolicited events "<level>EVENT args" (e.g. "<3>AP-STA-CONNECTED 02:..").
 *
 * Node has no AF_UNIX SOCK_DGRAM, so this uses the `unix-dgram` addon through
 * hw/os/unix-dgram.ts (built from source: works on x64 and arm64; the napi-rs
 * package node-unix-socket was dropped because its arm64 builds were never
 * published, see docs/decisions.md). Secrets sent over the
 * socket (SET_NETWORK psk) never appear in argv.
 */
import { EventEmitter } from 'node:events';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createUnixDgramSocket } from '../os/unix-dgram.js';
import type { UnixDgramSocket } from '../os/unix-dgram.js';
import { VigilError } from '../../base/errors.js';

export class WifiCtrlError extends VigilError {
  constructor(
    code: 'ECTRL_TIMEOUT' | 'ECTRL_CLOSED' | 'ECTRL_FAILED' | 'ECTRL_CONNECT',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'WifiCtrlError';
  }
}

export interface CtrlEvent {
  readonly level: number;
  /** Event name, e.g. AP-STA-CONNECTED. */
  readonly name: string;
  /** Everything after the name. */
  readonly args: string;
}

/** Parse "<3>AP-STA-CONNECTED 02:00:00:00:01:00" (undefined when not an event). */
export function parseCtrlEvent(msg: string): CtrlEvent | undefined {
  const m = /^<(\d)>(\S+)\s?([^]*)$/.exec(msg.trimEnd());
  if (!m) return undefined;
  return { level: Number(m[1]), name: m[2] ?? '', args: m[3] ?? '' };
}

interface Pending {
  readonly resolve: (reply: string) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

let seq = 0;

export interface WpaCtrlEvents {
  event: [CtrlEvent];
}

export class WpaCtrl extends EventEmitter<WpaCtrlEvents> {
  readonly #sock: UnixDgramSocket;
  readonly #remote: string;
  readonly #local: string;
  readonly #defaultTimeout: number;
  #queue: Promise<unknown> = Promise.resolve();
  #pending: Pending | undefined;
  #closed = false;

  private constructor(sock: UnixDgramSocket, remote: string, local: string, timeoutMs: number) {
    super();
    this.#sock = sock;
    this.#remote = remote;
    this.#local = local;
    this.#defaultTimeout = timeoutMs;
    sock.on('message', (buf: Buffer) => {
      this.#onData(buf.toString('utf8'));
    });
    sock.on('error', (err: Error) => {
      const p = this.#pending;
      this.#pending = undefined;
      if (p) {
        clearTimeout(p.timer);
        p.reject(
          new WifiCtrlError('ECTRL_FAILED', `control socket error: ${err.message}`, { cause: err }),
        );
      }
    });
  }

  /**
   * Connect to `<ctrlDir>/<ifname>`; the local end is bound in `localDir`
   * (a private runtime directory) and removed on close. Checks with PING.
   */
  static async open(remotePath: string, localDir: string, timeoutMs = 5000): Promise<WpaCtrl> {
    await mkdir(localDir, { recursive: true, mode: 0o700 });
    seq += 1;
    const local = join(localDir, `ctrl-${process.pid}-${seq}`);
    await rm(local, { force: true });
    const sock = createUnixDgramSocket();
    sock.bind(local);
    const ctrl = new WpaCtrl(sock, remotePath, local, timeoutMs);
    try {
      const pong = await ctrl.request('PING');
      if (pong.trim() !== 'PONG')
        throw new WifiCtrlError('ECTRL_CONNECT', `unexpected PING reply from ${remotePath}`);
    } catch (e) {
      await ctrl.close();
      throw e instanceof WifiCtrlError && e.code === 'ECTRL_CONNECT'
        ? e
        : new WifiCtrlError(
            'ECTRL_CONNECT',
            `cannot reach control socket ${remotePath}: ${e instanceof Error ? e.message : String(e)}`,
            { cause: e },
          );
    }
    return ctrl;
  }

  #onData(msg: string): void {
    const ev = msg.startsWith('<') ? parseCtrlEvent(msg) : undefined;
    if (ev) {
      this.emit('event', ev);
      return;
    }
    const p = this.#pending;
    if (!p) return; // a late reply to a timed-out request
    this.#pending = undefined;
    clearTimeout(p.timer);
    p.resolve(msg);
  }

  /** Send one command and wait for its reply (requests are serialised). */
  request(command: string, timeoutMs = this.#defaultTimeout): Promise<string> {
    const next = this.#queue.then(
      () => this.#send(command, timeoutMs),
      () => this.#send(command, timeoutMs),
    );
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** A command that must answer "OK". */
  async command(command: string, timeoutMs?: number): Promise<void> {
    const reply = (await this.request(command, timeoutMs)).trim();
    // never echo the command: it may carry a PSK
    if (reply !== 'OK')
      throw new WifiCtrlError(
        'ECTRL_FAILED',
        `${command.split(' ')[0] ?? ''} failed: ${reply.slice(0, 80)}`,
      );
  }

  #send(command: string, timeoutMs: number): Promise<string> {
    if (this.#closed)
      return Promise.reject(new WifiCtrlError('ECTRL_CLOSED', 'control socket is closed'));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        reject(
          new WifiCtrlError(
            'ECTRL_TIMEOUT',
            `no reply to ${command.split(' ')[0] ?? ''} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.#pending = { resolve, reject, timer };
      const buf = Buffer.from(command, 'utf8');
      this.#sock.send(buf, 0, buf.length, this.#remote, (err) => {
        if (err && this.#pending?.timer === timer) {
          this.#pending = undefined;
          clearTimeout(timer);
          reject(
            new WifiCtrlError('ECTRL_FAILED', `cannot send to ${this.#remote}: ${err.message}`, {
              cause: err,
            }),
          );
        }
      });
    });
  }

  /** Receive events (ATTACH). */
  async attach(): Promise<void> {
    await this.command('ATTACH');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const p = this.#pending;
    this.#pending = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.reject(new WifiCtrlError('ECTRL_CLOSED', 'control socket closed'));
    }
    try {
      this.#sock.close();
    } catch {
      /* already closed */
    }
    await rm(this.#local, { force: true });
  }
}
