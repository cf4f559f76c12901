/**
 * Live view on request (protocol/live-control.ts): a phone's `live-request`
 * over the config group starts a live session in the media pipeline (its own
 * sealed item, its own epoch in the livestream group) and is answered with
 * `live-started` or `live-refused {reason}`; `live-stop` ends it.
 *
 * One session is shared by every phone watching. It ends on `live-stop`, at
 * its time limit (`maxSeconds`, checked against the encoder's fragments), or
 * when no phone has asked for a while: a watching phone renews its request
 * (the companion does every RENEW_EVERY_S), so a phone that went away stops
 * costing uplink after `idleMs`. The hub cannot see the relay's live polls
 * (the relay is untrusted and keeps no per-reader state for the hub), so the
 * renewal is the phone's "still polling".
 */
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import {
  LIVE_REFUSED_TOPIC,
  LIVE_REQUEST_TOPIC,
  LIVE_STARTED_TOPIC,
  LIVE_STOP_TOPIC,
  decodeControl,
  encodeControl,
} from '../../protocol/live-control.js';
import type { LiveRefusalReason } from '../../protocol/live-control.js';
import type { ConfigChannel } from '../mls/config-channel.js';
import type { LiveSession } from './live.js';
import type { PipelineState } from './pipeline.js';

/** What the controller needs of the media pipeline. */
export interface LiveMedia {
  status(): { readonly state: PipelineState };
  startLive(opts: { maxS: number }): Promise<LiveSession>;
}

export interface LiveControlOptions {
  readonly channel: ConfigChannel;
  readonly media: () => LiveMedia | undefined;
  readonly logger: Logger;
  /** Whether the data volume is locked (refused with `storage-locked`). */
  readonly storageLocked?: () => boolean;
  readonly clock?: Clock;
  /** End the session when no request came for this long (default 60 s). */
  readonly idleMs?: number;
}

/** Why a request cannot be served now, from the pipeline's state (undefined: it can). */
export function refusalFor(
  state: PipelineState | undefined,
  storageLocked: boolean,
): LiveRefusalReason | undefined {
  if (storageLocked) return 'storage-locked';
  switch (state) {
    case undefined:
    case 'stopped':
    case 'camera-missing':
    case 'failed':
      return 'camera-down';
    case 'starting':
    case 'restarting':
      return 'busy';
    case 'running':
      return undefined;
  }
}

interface Active {
  readonly session: LiveSession;
  readonly maxSeconds: number;
  idle: { cancel(): void };
}

export class LiveControl {
  readonly #o: LiveControlOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  #active: Active | undefined;
  #starting: Promise<Active> | undefined;
  readonly #off: (() => void)[] = [];

  constructor(o: LiveControlOptions) {
    this.#o = o;
    this.#log = o.logger.child('live-control');
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    this.#off.push(
      o.channel.onApp(LIVE_REQUEST_TOPIC, (m) => this.#request(m.phoneId, m.body)),
      o.channel.onApp(LIVE_STOP_TOPIC, (m) => this.#stop(m.phoneId, m.body)),
    );
  }

  get active(): boolean {
    return this.#active !== undefined;
  }

  /** Remove the handlers and end a running session. */
  async close(): Promise<void> {
    for (const off of this.#off.splice(0)) off();
    await this.#end('hub stopping');
  }

  async #request(phoneId: string, body: Uint8Array): Promise<void> {
    const d = decodeControl(LIVE_REQUEST_TOPIC, body);
    if (!d.ok) {
      this.#log.warn('bad live request', { phoneId, err: d.error.message });
      return;
    }
    const media = this.#o.media();
    const reason = refusalFor(media?.status().state, this.#o.storageLocked?.() ?? false);
    if (reason !== undefined || media === undefined) {
      await this.#refuse(phoneId, reason ?? 'camera-down');
      return;
    }
    let a: Active;
    try {
      a = await this.#session(media, d.value.maxSeconds);
    } catch (e) {
      const why = reasonOf(e);
      this.#log.warn('live session did not start', { err: why });
      await this.#refuse(phoneId, /no video stream/.test(why) ? 'no-video-yet' : 'error', why);
      return;
    }
    this.#renew(a);
    await this.#o.channel.sendApp(
      LIVE_STARTED_TOPIC,
      encodeControl(LIVE_STARTED_TOPIC, {
        v: 1,
        itemId: a.session.itemId,
        maxSeconds: a.maxSeconds,
      }),
      phoneId,
    );
  }

  /** The running session, or a new one (concurrent requests share one start). */
  async #session(media: LiveMedia, maxSeconds: number): Promise<Active> {
    if (this.#active) return this.#active;
    this.#starting ??= (async () => {
      const session = await media.startLive({ maxS: maxSeconds });
      const a: Active = { session, maxSeconds, idle: { cancel: () => undefined } };
      this.#active = a;
      void session.ended.then((why) => {
        if (this.#active === a) {
          this.#active = undefined;
          a.idle.cancel();
        }
        this.#log.info('live session ended', { itemId: session.itemId, why });
      });
      return a;
    })().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  #renew(a: Active): void {
    a.idle.cancel();
    a.idle = this.#clock.setTimeout(() => {
      if (this.#active !== a) return;
      this.#log.info('no phone renewed the live request; stopping', {
        itemId: a.session.itemId,
      });
      void this.#end('idle');
    }, this.#o.idleMs ?? 60_000);
  }

  async #stop(phoneId: string, body: Uint8Array): Promise<void> {
    const d = decodeControl(LIVE_STOP_TOPIC, body);
    if (!d.ok) {
      this.#log.warn('bad live stop', { phoneId, err: d.error.message });
      return;
    }
    await this.#end('stopped by a phone');
  }

  async #end(why: string): Promise<void> {
    const a = this.#active;
    if (!a) return;
    this.#active = undefined;
    a.idle.cancel();
    this.#log.info('stopping live session', { itemId: a.session.itemId, why });
    await a.session.stop();
  }

  async #refuse(phoneId: string, reason: LiveRefusalReason, detail?: string): Promise<void> {
    this.#log.info('live request refused', { phoneId, reason });
    await this.#o.channel.sendApp(
      LIVE_REFUSED_TOPIC,
      encodeControl(LIVE_REFUSED_TOPIC, {
        v: 1,
        reason,
        ...(detail !== undefined ? { detail: detail.slice(0, 300) } : {}),
      }),
      phoneId,
    );
  }
}
