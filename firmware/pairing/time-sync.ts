/**
 * Phone time sync: the phone sends its wall clock in its pairing `hello`; the
 * hub (no RTC) sets its own clock from it when its clock is clearly wrong.
 *
 * Rules (pure, `decideTimeSync`):
 *  - a phone time before the build date is refused (a hub never moves its clock
 *    back past the date its software was built, whoever asks);
 *  - a phone time more than 30 years after the build date is implausible;
 *  - within 5 minutes of the hub's clock nothing changes (network and human
 *    delays; NTP refines it later once the hub is online);
 *  - otherwise the clock is set, forwards or backwards.
 * `TimeSync` applies the decision through the `SystemClock` port and logs it.
 */
import { statSync } from 'node:fs';
import type { SystemClock } from '../../hw/clock/system-clock.js';
import type { Logger } from '../../base/logger.js';
import { reasonOf } from '../../base/errors.js';

/** Skew below which the hub keeps its clock. */
export const TIME_SYNC_THRESHOLD_MS = 5 * 60 * 1000;
/** The latest plausible time, counted from the build date. */
export const MAX_AFTER_BUILD_MS = 30 * 365.25 * 24 * 3600 * 1000;
/** No Vigil software is older than this (the floor when the build date is unknown). */
export const BUILD_FLOOR_MS = Date.UTC(2026, 0, 1);

export type TimeSyncDecision =
  | { readonly apply: true; readonly toMs: number; readonly skewMs: number }
  | {
      readonly apply: false;
      readonly reason: 'in-sync' | 'before-build' | 'implausible';
      readonly skewMs: number;
    };

export function decideTimeSync(
  hubNowMs: number,
  phoneMs: number,
  buildTimeMs: number,
  thresholdMs = TIME_SYNC_THRESHOLD_MS,
): TimeSyncDecision {
  const skewMs = Number.isFinite(phoneMs) ? phoneMs - hubNowMs : Number.NaN;
  if (!Number.isFinite(phoneMs)) return { apply: false, reason: 'implausible', skewMs };
  if (phoneMs < buildTimeMs) return { apply: false, reason: 'before-build', skewMs };
  if (phoneMs > buildTimeMs + MAX_AFTER_BUILD_MS)
    return { apply: false, reason: 'implausible', skewMs };
  if (Math.abs(skewMs) <= thresholdMs) return { apply: false, reason: 'in-sync', skewMs };
  return { apply: true, toMs: phoneMs, skewMs };
}

/**
 * The build date: the newest of the floor and the modification time of the
 * program that runs (an image's files carry the build's timestamp).
 */
export function buildTimeOf(entry: string | undefined = process.argv[1]): number {
  let t = BUILD_FLOOR_MS;
  if (entry !== undefined) {
    try {
      t = Math.max(t, statSync(entry).mtimeMs);
    } catch {
      /* no such file (REPL, tests): the floor */
    }
  }
  return t;
}

export interface TimeSyncDeps {
  readonly clock: SystemClock;
  readonly buildTimeMs: number;
  readonly logger: Logger;
  readonly thresholdMs?: number;
}

export class TimeSync {
  readonly #d: TimeSyncDeps;
  #last: Promise<TimeSyncDecision> = Promise.resolve({
    apply: false,
    reason: 'in-sync',
    skewMs: 0,
  });

  constructor(deps: TimeSyncDeps) {
    this.#d = deps;
  }

  /** The PairingResponder's `onTimeSync` hook: decide, apply, log; never throws. */
  readonly onPhoneTime = (phoneMs: number): void => {
    this.#last = this.apply(phoneMs);
  };

  /** The latest decision (tests, status). */
  settled(): Promise<TimeSyncDecision> {
    return this.#last;
  }

  async apply(phoneMs: number): Promise<TimeSyncDecision> {
    const { clock, logger } = this.#d;
    const before = clock.now();
    const d = decideTimeSync(before, phoneMs, this.#d.buildTimeMs, this.#d.thresholdMs);
    if (!d.apply) {
      if (d.reason !== 'in-sync')
        logger.warn('phone time ignored', { reason: d.reason, skewMs: d.skewMs });
      return d;
    }
    try {
      await clock.set(d.toMs);
      logger.warn('system clock set from the phone', {
        from: new Date(before).toISOString(),
        to: new Date(d.toMs).toISOString(),
        skewMs: d.skewMs,
      });
    } catch (e) {
      logger.error('could not set the system clock from the phone', { error: reasonOf(e) });
    }
    return d;
  }
}
