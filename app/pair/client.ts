/**
 * Phone side of the pairing transport: connect to the hub's frame server on
 * the hotspot, run the MLS handshake (app/e2ee PairingInitiator) over
 * length-prefixed frames, then send the home Wi-Fi credentials sealed in the
 * config group and wait for the hub's answer.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { sleep } from '../../base/async.js';
import { CodedError } from '../../base/errors.js';
import { b64, decodeFrame, encodeFrame } from '../../protocol/e2ee-frames.js';
import {
  FrameDecoder,
  WIFI_CREDENTIALS_TOPIC,
  decodeStatus,
  encodeWifiCredentials,
  encodeWireFrame,
  frameError,
} from '../../protocol/pairing-transport.js';
import type { WireFrame } from '../../protocol/pairing-transport.js';
import type { PairingInitiator } from '../e2ee/pairing-initiator.js';
import type { E2eePhone } from '../e2ee/phone.js';

export type PairClientErrorCode =
  | 'EPAIR_CONNECT'
  | 'EPAIR_TIMEOUT'
  | 'EPAIR_CLOSED'
  | 'EPAIR_REFUSED'
  | 'EPAIR_PROTOCOL'
  | 'EPAIR_HANDSHAKE'
  | 'EPAIR_NETWORK_NOT_FOUND'
  | 'EPAIR_CREDENTIALS';

export class PairClientError extends CodedError<PairClientErrorCode> {
  /** The hub's own error code, when it sent one. */
  readonly hubCode: string | undefined;
  constructor(
    code: PairClientErrorCode,
    message: string,
    hubCode?: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.hubCode = hubCode;
  }
}

/** Connection errors of a link still coming up (`PairingClient.connectRetrying`). */
const TRANSIENT_CONNECT: ReadonlySet<string> = new Set([
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNREFUSED',
]);
export const CONNECT_RETRY_MS = 1000;

export class PairingClient {
  readonly #s: Socket;
  readonly #decoder = new FrameDecoder();
  readonly #queue: WireFrame[] = [];
  #waiter: (() => void) | undefined;
  #closed: string | undefined;
  readonly #timeoutMs: number;

  private constructor(s: Socket, timeoutMs: number) {
    this.#s = s;
    this.#timeoutMs = timeoutMs;
    s.on('data', (chunk: Buffer) => {
      const { frames, error } = this.#decoder.push(chunk);
      this.#queue.push(...frames);
      if (error) this.#closed = `hub sent a malformed frame: ${error.message}`;
      this.#waiter?.();
    });
    s.on('close', () => {
      this.#closed ??= 'the hub closed the connection';
      this.#waiter?.();
    });
    s.on('error', (e) => {
      this.#closed = `connection error: ${e.message}`;
    });
  }

  /**
   * `connect`, tried again (1 s apart, until `timeoutMs` has passed) while the error says the
   * link is still coming up: a phone that has just joined the hotspot may not reach the hub
   * for a moment (no neighbour entry yet: EHOSTUNREACH) or the frame server may be starting
   * (ECONNREFUSED). Any other error, or the deadline, ends it with the last error.
   */
  static async connectRetrying(
    host: string,
    port: number,
    timeoutMs = 30_000,
    onRetry?: (code: string) => void,
  ): Promise<PairingClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await PairingClient.connect(host, port, timeoutMs);
      } catch (e) {
        const code = (e as { cause?: { code?: unknown } }).cause?.code;
        if (typeof code !== 'string' || !TRANSIENT_CONNECT.has(code)) throw e;
        if (Date.now() + CONNECT_RETRY_MS >= deadline) throw e;
        onRetry?.(code);
        await sleep(CONNECT_RETRY_MS);
      }
    }
  }

  static connect(host: string, port: number, timeoutMs = 30_000): Promise<PairingClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(
          new PairClientError('EPAIR_CONNECT', `cannot reach the hub at ${host}:${port} (timeout)`),
        );
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.setNoDelay(true);
        resolve(new PairingClient(s, timeoutMs));
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(
          new PairClientError(
            'EPAIR_CONNECT',
            `cannot reach the hub at ${host}:${port}: ${e.message}`,
            undefined,
            { cause: e },
          ),
        );
      });
    });
  }

  send(f: WireFrame): void {
    this.#s.write(encodeWireFrame(f));
  }

  /** Next frame from the hub; a hub `status error` frame becomes a PairClientError. */
  async next(): Promise<WireFrame> {
    const deadline = Date.now() + this.#timeoutMs;
    for (;;) {
      const f = this.#queue.shift();
      if (f) {
        if (f.kind === 'status') {
          const decoded = decodeStatus(f.payload);
          if (!decoded.ok) throw frameError(decoded);
          const st = decoded.value;
          if (st.t === 'error') {
            const refused = st.code.startsWith('EWINDOW') || st.code === 'EBUSY';
            throw new PairClientError(
              refused ? 'EPAIR_REFUSED' : 'EPAIR_PROTOCOL',
              `hub: ${st.message}`,
              st.code,
            );
          }
        }
        return f;
      }
      if (this.#closed !== undefined) throw new PairClientError('EPAIR_CLOSED', this.#closed);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new PairClientError(
          'EPAIR_TIMEOUT',
          `no answer from the hub within ${this.#timeoutMs / 1000} s`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(t);
          this.#waiter = undefined;
          resolve();
        };
      });
    }
  }

  /** Run the handshake to the end; returns the paired phone. */
  async pair(ini: PairingInitiator): Promise<E2eePhone> {
    this.send({ kind: 'pairing', payload: encodeFrame(await ini.start()) });
    while (!ini.finished) {
      let f: WireFrame;
      try {
        f = await this.next();
      } catch (e) {
        ini.abort(e instanceof Error ? e.message : 'connection failed');
        throw e;
      }
      if (f.kind !== 'pairing') continue;
      const d = decodeFrame(f.payload);
      if (!d.ok) {
        ini.abort('malformed frame from hub');
        throw new PairClientError('EPAIR_PROTOCOL', d.reason);
      }
      for (const out of await ini.handle(d.value))
        this.send({ kind: 'pairing', payload: encodeFrame(out) });
    }
    const phone = ini.phone;
    if (!phone) {
      const why = ini.failure;
      throw new PairClientError(
        'EPAIR_HANDSHAKE',
        `pairing failed: ${why?.message ?? 'unknown reason'}`,
        why?.code,
      );
    }
    return phone;
  }

  /**
   * Seal the home Wi-Fi credentials in the config group and send them. Resolves
   * with the pairing token once the hub says it is leaving the hotspot. With
   * `relay`, the hub uses that relay from then on (a user who runs their own);
   * a URL the hub refuses comes back as a PairClientError with hubCode ERELAY_URL.
   */
  async sendCredentials(
    phone: E2eePhone,
    ssid: string,
    passphrase: string,
    pairingToken = randomBytes(16).toString('hex'),
    relay?: { readonly url: string; readonly enrollToken?: string },
  ): Promise<string> {
    const body = encodeWifiCredentials({
      ssid,
      passphrase,
      pairingToken,
      ...(relay !== undefined ? { relayUrl: relay.url } : {}),
      ...(relay?.enrollToken !== undefined ? { relayEnrollToken: relay.enrollToken } : {}),
    });
    const sealed = await phone.send({ t: 'app', topic: WIFI_CREDENTIALS_TOPIC, body: b64(body) });
    this.send({ kind: 'config', payload: sealed });
    for (;;) {
      const f = await this.next();
      if (f.kind !== 'status') continue;
      const decoded = decodeStatus(f.payload);
      if (!decoded.ok) throw frameError(decoded);
      const st = decoded.value;
      if (st.t !== 'handoff') continue;
      if (st.state === 'leaving-hotspot') return pairingToken;
      if (st.state === 'network-not-found')
        throw new PairClientError('EPAIR_NETWORK_NOT_FOUND', `hub: ${st.message}`);
    }
  }

  close(): void {
    this.#s.end();
    this.#s.destroySoon();
  }
}
