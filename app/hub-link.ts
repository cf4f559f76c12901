/**
 * The companion's live conversation with its hub over the config group
 * (protocol/live-control.ts):
 *
 *  - live view on request: `requestLive` seals a `live-request`, posts it up,
 *    and waits for the hub's `live-started` or `live-refused` (or a timeout);
 *    `renewLive` repeats the request while someone watches (the hub stops a
 *    session nobody renews); `stopLive` sends `live-stop`;
 *  - the offline alert: the hub's sealed `hub-alive` beats are authenticated
 *    by MLS; the alert is raised when the newest one is older than the
 *    threshold (default 3 x the hub's announced interval, or the configured
 *    `offlineAfterMs`) and cleared by the next beat. A beat whose `at` is not
 *    newer than the last one's is ignored (a replay cannot look fresh).
 *    Age is measured on this device's clock from when the beat arrived;
 *  - the hub's health notices (`hub-health`: camera failed, storage locked,
 *    encoder fell back to software), the newest kept for display.
 *
 * Replies reach this object through `E2eeCrypto.onApp` handlers, called by
 * the Syncer as it pulls the mailbox.
 */
import type { Clock } from '../base/clock.js';
import { SYSTEM_CLOCK } from '../base/clock.js';
import { VigilError } from '../base/errors.js';
import type { ConfigMessage } from '../protocol/e2ee-frames.js';
import {
  HUB_ALIVE_TOPIC,
  HUB_HEALTH_TOPIC,
  LIVE_REFUSED_TOPIC,
  LIVE_REQUEST_TOPIC,
  LIVE_STARTED_TOPIC,
  LIVE_STOP_TOPIC,
  decodeControl,
  describeHealth,
  describeRefusal,
  encodeControl,
} from '../protocol/live-control.js';
import type { HubHealth, LiveRefusalReason, LiveStarted } from '../protocol/live-control.js';

/** Renew a live request this often while watching (the hub's idle stop is 60 s). */
export const RENEW_EVERY_S = 20;
export const DEFAULT_LIVE_SECONDS = 300;
/** Used until the first beat announces the hub's interval (the hub's default is 15 min). */
export const DEFAULT_OFFLINE_AFTER_MS = 3 * 15 * 60_000;

/** Run `fn` now; a throw becomes a rejection (handlers answer with promises). */
function settled<T>(fn: () => T): Promise<T> {
  return new Promise((resolve) => {
    resolve(fn());
  });
}

export interface HubLinkDeps {
  /** Register a handler for an `app` topic (E2eeCrypto.onApp). */
  readonly onApp: (topic: string, handler: (body: Uint8Array) => Promise<string>) => void;
  /** Seal a config message (E2eePhone.send). */
  readonly seal: (msg: ConfigMessage) => Promise<Uint8Array>;
  /** Post sealed bytes up to the hub (RelayClient.postUp('config', ...)). */
  readonly postUp: (bytes: Uint8Array) => Promise<unknown>;
  readonly clock?: Clock;
  /** Offline threshold; default 3 x the interval the hub announces. */
  readonly offlineAfterMs?: number;
}

export type LiveAnswer =
  | { readonly ok: true; readonly started: LiveStarted }
  | {
      readonly ok: false;
      readonly reason: LiveRefusalReason | 'timeout';
      readonly message: string;
    };

export interface HubStatus {
  readonly offline: boolean;
  /** When the newest authenticated beat arrived (this device's clock), if any. */
  readonly lastSeenAt: number | null;
  readonly thresholdMs: number;
  readonly health: string | null;
  readonly message: string | null;
}

export class LiveControlError extends VigilError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'LiveControlError';
  }
}

export class HubLink {
  readonly #d: HubLinkDeps;
  readonly #clock: Clock;
  readonly #waiters = new Set<(a: LiveAnswer) => void>();
  readonly #listeners = new Set<(s: HubStatus) => void>();
  #lastSeenAt: number | undefined;
  #lastAt = -1;
  #intervalMs: number | undefined;
  #since: number;
  #offline = false;
  #timer: { cancel(): void } | undefined;
  #health: HubHealth | undefined;

  constructor(d: HubLinkDeps) {
    this.#d = d;
    this.#clock = d.clock ?? SYSTEM_CLOCK;
    this.#since = this.#clock.now();
    d.onApp(LIVE_STARTED_TOPIC, (b) => settled(() => this.#started(b)));
    d.onApp(LIVE_REFUSED_TOPIC, (b) => settled(() => this.#refused(b)));
    d.onApp(HUB_ALIVE_TOPIC, (b) => settled(() => this.#alive(b)));
    d.onApp(HUB_HEALTH_TOPIC, (b) => settled(() => this.#healthNotice(b)));
    this.#arm();
  }

  get thresholdMs(): number {
    return (
      this.#d.offlineAfterMs ??
      (this.#intervalMs !== undefined ? 3 * this.#intervalMs : DEFAULT_OFFLINE_AFTER_MS)
    );
  }

  status(): HubStatus {
    const lastSeen = this.#lastSeenAt ?? null;
    const health = this.#health ? describeHealth(this.#health) : null;
    let message: string | null = null;
    if (this.#offline)
      message =
        lastSeen === null
          ? `no word from the hub since this viewer started (${Math.round(this.thresholdMs / 1000)} s)`
          : `hub offline: last heard ${new Date(lastSeen).toISOString()}`;
    return {
      offline: this.#offline,
      lastSeenAt: lastSeen,
      thresholdMs: this.thresholdMs,
      health,
      message,
    };
  }

  onStatus(fn: (s: HubStatus) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Stop the offline timer (the companion is closing). */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const w of [...this.#waiters])
      w({ ok: false, reason: 'timeout', message: 'the viewer is closing' });
  }

  /**
   * Ask the hub for live view and wait for its answer; `timeoutMs` bounds the
   * wait (the hub may be offline: the request then waits on the relay).
   */
  async requestLive(
    maxSeconds: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<LiveAnswer> {
    const answer = new Promise<LiveAnswer>((resolve) => {
      const done = (a: LiveAnswer): void => {
        this.#waiters.delete(done);
        timer.cancel();
        signal?.removeEventListener('abort', onAbort);
        resolve(a);
      };
      const onAbort = (): void => {
        done({ ok: false, reason: 'timeout', message: 'live request cancelled' });
      };
      const timer = this.#clock.setTimeout(() => {
        done({
          ok: false,
          reason: 'timeout',
          message: `no answer from the hub within ${Math.round(timeoutMs / 1000)} s (is it offline?)`,
        });
      }, timeoutMs);
      this.#waiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    await this.renewLive(maxSeconds);
    return answer;
  }

  /** Send (again) a live request without waiting for the answer. */
  async renewLive(maxSeconds: number): Promise<void> {
    const body = encodeControl(LIVE_REQUEST_TOPIC, { v: 1, maxSeconds });
    await this.#send(LIVE_REQUEST_TOPIC, body);
  }

  async stopLive(): Promise<void> {
    await this.#send(LIVE_STOP_TOPIC, encodeControl(LIVE_STOP_TOPIC, { v: 1 }));
  }

  async #send(topic: string, body: Uint8Array): Promise<void> {
    const sealed = await this.#d.seal({
      t: 'app',
      topic,
      body: Buffer.from(body).toString('base64url'),
    });
    await this.#d.postUp(sealed);
  }

  #answer(a: LiveAnswer): void {
    for (const w of [...this.#waiters]) w(a);
  }

  #started(body: Uint8Array): string {
    const d = decodeControl(LIVE_STARTED_TOPIC, body);
    if (!d.ok) throw d.error;
    this.#answer({ ok: true, started: d.value });
    return `live view started (${d.value.itemId})`;
  }

  #refused(body: Uint8Array): string {
    const d = decodeControl(LIVE_REFUSED_TOPIC, body);
    if (!d.ok) throw d.error;
    const message = describeRefusal(d.value);
    this.#answer({ ok: false, reason: d.value.reason, message });
    return message;
  }

  #alive(body: Uint8Array): string {
    const d = decodeControl(HUB_ALIVE_TOPIC, body);
    if (!d.ok) throw d.error;
    if (d.value.at <= this.#lastAt) return 'hub-alive (old beat ignored)';
    this.#lastAt = d.value.at;
    this.#intervalMs = d.value.intervalSeconds * 1000;
    this.#lastSeenAt = this.#clock.now();
    this.#arm();
    return 'hub is alive';
  }

  #healthNotice(body: Uint8Array): string {
    const d = decodeControl(HUB_HEALTH_TOPIC, body);
    if (!d.ok) throw d.error;
    this.#health = d.value.condition === 'recovered' ? undefined : d.value;
    this.#emit();
    return describeHealth(d.value);
  }

  /** (Re)start the offline timer from the newest beat (or from start-up). */
  #arm(): void {
    this.#timer?.cancel();
    const from = this.#lastSeenAt ?? this.#since;
    const wait = Math.max(0, from + this.thresholdMs - this.#clock.now());
    const wasOffline = this.#offline;
    this.#offline = wait === 0;
    this.#timer = this.#clock.setTimeout(() => {
      this.#offline = true;
      this.#emit();
    }, wait);
    if (wasOffline !== this.#offline || this.#lastSeenAt !== undefined) this.#emit();
  }

  #emit(): void {
    const s = this.status();
    for (const fn of this.#listeners) fn(s);
  }
}

/** The link over a paired phone (E2eeCrypto) and its relay client. */
export function linkOver(
  crypto: {
    onApp(topic: string, h: (body: Uint8Array) => Promise<string>): void;
    readonly phone: { send(m: ConfigMessage): Promise<Uint8Array> };
  },
  client: { postUp(group: string, bytes: Uint8Array): Promise<unknown> },
  opts: { clock?: Clock; offlineAfterMs?: number } = {},
): HubLink {
  return new HubLink({
    onApp: (topic, h) => {
      crypto.onApp(topic, h);
    },
    seal: (m) => crypto.phone.send(m),
    postUp: (b) => client.postUp('config', b),
    ...opts,
  });
}
