/**
 * The pairing frame server on the hotspot address: the transport under the
 * pairing session. Length-prefixed, versioned frames (protocol/
 * pairing-transport.ts), a size cap, per-connection idle and total timeouts,
 * one attempt at a time, and the pairing window's attempt counting: every
 * admitted connection that neither pairs nor delivers credentials is a failed
 * attempt; a connection while the window is closed is refused (the 21st).
 *
 * `PairingConnection` is the socket-free core (the fuzz test drives it
 * in-process); `PairingServer` binds it to node:net.
 */
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { listen } from '../../hw/os/net.js';
import { reasonOf } from '../../base/errors.js';
import { FrameDecoder, StatusFrame, encodeWireFrame } from '../../protocol/pairing-transport.js';
import type { WireFrame } from '../../protocol/pairing-transport.js';
import type { Logger } from '../../base/logger.js';
import { SILENT } from '../../base/logger.js';
import type { PairingSession, SessionEnd, SessionEvent } from './session.js';
import type { PairingWindow } from './window.js';

export const IDLE_TIMEOUT_MS = 30_000;
export const SESSION_TIMEOUT_MS = 3 * 60_000;
/** More frames than a pairing needs (hello + 5 key packages + confirm + a few config) is abuse. */
export const MAX_FRAMES_PER_CONNECTION = 64;
export const DEFAULT_PORT = 7767;

export interface ConnectionResult {
  /** Did the connection pair a phone or deliver credentials? */
  readonly succeeded: boolean;
  readonly code: string;
  readonly message: string;
}

export interface ConnectionIo {
  send(bytes: Buffer): void;
  /** Close after everything sent so far has been flushed. */
  close(): void;
  onEvent?(e: SessionEvent): void;
}

function statusBytes(code: string, message: string): Buffer {
  const s = StatusFrame.parse({
    t: 'error',
    code: code.slice(0, 64),
    message: message.slice(0, 500),
  });
  return encodeWireFrame({ kind: 'status', payload: Buffer.from(JSON.stringify(s), 'utf8') });
}

/** Socket-free core of one connection. */
export class PairingConnection {
  readonly #session: PairingSession;
  readonly #io: ConnectionIo;
  readonly #decoder = new FrameDecoder();
  #frames = 0;
  #result: ConnectionResult | undefined;
  readonly done: Promise<ConnectionResult>;
  #resolve!: (r: ConnectionResult) => void;
  #busy = 0;

  constructor(session: PairingSession, io: ConnectionIo) {
    this.#session = session;
    this.#io = io;
    this.done = new Promise((r) => (this.#resolve = r));
  }

  get result(): ConnectionResult | undefined {
    return this.#result;
  }

  #finish(end: SessionEnd, sendError: boolean): void {
    if (this.#result) return;
    const succeeded = this.#session.succeeded || end.ok;
    if (!succeeded) this.#session.abort(end.message);
    if (sendError && !end.ok) this.#io.send(statusBytes(end.code, end.message));
    this.#result = { succeeded, code: end.code, message: end.message };
    this.#io.close();
    this.#resolve(this.#result);
  }

  #isDone(): boolean {
    return this.#result !== undefined;
  }

  /** True while the hub is working on received frames (the phone is waiting for us). */
  get busy(): boolean {
    return this.#busy > 0;
  }

  /** Feed received bytes; resolves when they have been handled (the caller pauses reading meanwhile). */
  async receive(data: Uint8Array): Promise<void> {
    if (this.#result) return;
    const { frames, error } = this.#decoder.push(data);
    this.#busy += 1;
    try {
      for (const f of frames) {
        if (this.#isDone()) return;
        await this.#frame(f);
      }
    } finally {
      this.#busy -= 1;
    }
    if (error && !this.#isDone())
      this.#finish({ ok: false, code: error.code, message: error.message }, true);
  }

  async #frame(f: WireFrame): Promise<void> {
    this.#frames += 1;
    if (this.#frames > MAX_FRAMES_PER_CONNECTION) {
      this.#finish(
        {
          ok: false,
          code: 'EFRAME_TOO_MANY',
          message: `more than ${MAX_FRAMES_PER_CONNECTION} frames on one connection`,
        },
        true,
      );
      return;
    }
    const step = await this.#session.handle(f);
    for (const r of step.replies) this.#io.send(encodeWireFrame(r));
    for (const e of step.events ?? []) this.#io.onEvent?.(e);
    if (step.end) this.#finish(step.end, false);
  }

  /** The peer closed its side. */
  end(): void {
    if (this.#result) return;
    const err = this.#decoder.end();
    if (err) this.#finish({ ok: false, code: err.code, message: err.message }, false);
    else if (this.#session.succeeded)
      this.#finish({ ok: true, code: 'OK', message: 'closed by the phone' }, false);
    else
      this.#finish(
        {
          ok: false,
          code: 'ECONN_CLOSED',
          message: 'the phone closed the connection before pairing finished',
        },
        false,
      );
  }

  timeout(which: 'idle' | 'session'): void {
    this.#finish(
      {
        ok: false,
        code: which === 'idle' ? 'ETIMEOUT_IDLE' : 'ETIMEOUT_SESSION',
        message:
          which === 'idle'
            ? `no frame for ${IDLE_TIMEOUT_MS / 1000} s`
            : `pairing took longer than ${SESSION_TIMEOUT_MS / 1000} s`,
      },
      true,
    );
  }

  /** Socket error or server shutdown. */
  fail(code: string, message: string): void {
    this.#finish({ ok: false, code, message }, false);
  }
}

export interface PairingServerEvents {
  attempt: [ConnectionResult];
  refused: [{ code: string; message: string }];
  session: [SessionEvent];
}

export interface PairingServerOptions {
  readonly window: PairingWindow;
  readonly newSession: () => PairingSession;
  readonly logger?: Logger;
  readonly idleTimeoutMs?: number;
  readonly sessionTimeoutMs?: number;
}

export class PairingServer extends EventEmitter<PairingServerEvents> {
  readonly #o: PairingServerOptions;
  readonly #log: Logger;
  #server: Server | undefined;
  #active: { socket: Socket; conn: PairingConnection } | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(o: PairingServerOptions) {
    super();
    this.#o = o;
    this.#log = o.logger ?? SILENT;
  }

  get busy(): boolean {
    return this.#active !== undefined;
  }

  async listen(host: string, port = DEFAULT_PORT): Promise<AddressInfo> {
    if (this.#server) throw new Error('pairing server already listening');
    const server = createServer({ allowHalfOpen: false, pauseOnConnect: true }, (s) => {
      this.#accept(s);
    });
    server.maxConnections = 8;
    this.#server = server;
    await listen(server, { host, port, exclusive: true });
    const addr = server.address() as AddressInfo;
    this.#log.info('pairing server listening', { host: addr.address, port: addr.port });
    return addr;
  }

  #refuse(s: Socket, code: string, message: string): void {
    this.#log.info('pairing connection refused', { code });
    this.emit('refused', { code, message });
    s.end(statusBytes(code, message));
    s.destroySoon();
  }

  #accept(s: Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
    s.on('error', () => {
      /* reported through close */
    });
    const admission = this.#o.window.admit();
    if (!admission.ok) {
      this.#refuse(s, admission.code, admission.message);
      return;
    }
    if (this.#active) {
      this.#refuse(s, 'EBUSY', 'another phone is pairing right now; try again in a minute');
      return;
    }
    const session = this.#o.newSession();
    const conn = new PairingConnection(session, {
      send: (b) => {
        if (!s.destroyed) s.write(b);
      },
      close: () => {
        s.end();
        // a peer that never reads must not keep the socket open
        setTimeout(() => s.destroy(), 2000).unref();
      },
      onEvent: (e) => this.emit('session', e),
    });
    this.#active = { socket: s, conn };
    const idleMs = this.#o.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    s.setTimeout(idleMs, () => {
      // idle means the phone is silent while we wait for it, not while we work (a scan for
      // the home network can take longer than the idle timeout); our reply re-arms the timer
      if (conn.busy) return;
      conn.timeout('idle');
    });
    const total = setTimeout(() => {
      conn.timeout('session');
    }, this.#o.sessionTimeoutMs ?? SESSION_TIMEOUT_MS);
    total.unref();
    s.setNoDelay(true);
    s.on('data', (chunk: Buffer) => {
      // one chunk at a time: memory stays bounded however fast the peer sends
      s.pause();
      conn.receive(chunk).then(
        () => {
          if (!conn.result && !s.destroyed) s.resume();
        },
        (e: unknown) => {
          conn.fail('EINTERNAL', reasonOf(e));
        },
      );
    });
    s.once('end', () => {
      conn.end();
    });
    s.once('close', () => {
      conn.fail('ECONN_CLOSED', 'connection lost');
    });
    void conn.done.then((r) => {
      clearTimeout(total);
      if (this.#active?.conn === conn) this.#active = undefined;
      if (r.succeeded) this.#log.info('pairing connection finished', { code: r.code });
      else {
        this.#log.warn('pairing attempt failed', { code: r.code, reason: r.message });
        this.#o.window.failed();
      }
      this.emit('attempt', r);
    });
    s.resume();
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#active?.conn.fail('ESHUTDOWN', 'pairing server stopped');
    for (const s of this.#sockets) s.destroy();
    if (server)
      await new Promise<void>((r) =>
        server.close(() => {
          r();
        }),
      );
  }
}
