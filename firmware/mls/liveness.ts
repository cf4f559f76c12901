/**
 * The hub's authenticated "I am alive": a sealed `hub-alive` message
 * (protocol/live-control.ts) to every phone over the config group, once at
 * start and then every `intervalMs`. The phone raises an offline alert when
 * the newest one it could open is older than its threshold (app/hub-link.ts);
 * the relay cannot forge or replay one into looking fresh (MLS, and `at`).
 *
 * A send that fails (relay down, no phone) is logged and the schedule goes on:
 * the next beat is the retry.
 */
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import { HUB_ALIVE_TOPIC, encodeControl } from '../../protocol/live-control.js';
import type { ConfigChannel } from './config-channel.js';

export const DEFAULT_ALIVE_INTERVAL_MS = 15 * 60_000;

export class HubLiveness {
  readonly #channel: Pick<ConfigChannel, 'sendApp'>;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  #timer: { cancel(): void } | undefined;
  #running = false;
  sent = 0;

  constructor(o: {
    channel: Pick<ConfigChannel, 'sendApp'>;
    logger: Logger;
    clock?: Clock;
    intervalMs?: number;
  }) {
    this.#channel = o.channel;
    this.#log = o.logger.child('liveness');
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    this.#intervalMs = Math.max(1000, o.intervalMs ?? DEFAULT_ALIVE_INTERVAL_MS);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#beat();
  }

  stop(): void {
    this.#running = false;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #beat(): void {
    if (!this.#running) return;
    const body = encodeControl(HUB_ALIVE_TOPIC, {
      v: 1,
      at: Math.floor(this.#clock.now()),
      intervalSeconds: Math.max(1, Math.round(this.#intervalMs / 1000)),
    });
    this.#channel.sendApp(HUB_ALIVE_TOPIC, body).then(
      () => {
        this.sent++;
      },
      (e: unknown) => {
        if (this.#running) this.#log.warn('hub-alive not sent', { err: reasonOf(e) });
      },
    );
    this.#timer = this.#clock.setTimeout(() => {
      this.#beat();
    }, this.#intervalMs);
  }
}
