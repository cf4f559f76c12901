/**
 * The relay's age limit: every account's items (clips, thumbnails, messages)
 * are deleted once stored longer than `maxAgeMs`, whether fetched or not, so a
 * phone that never comes back cannot make the relay keep ciphertext forever.
 * Runs at start and every `intervalMs`.
 */
import type { Logger } from '../base/logger.js';
import type { RelayCore } from './core.js';

export const DEFAULT_MAX_AGE_DAYS = 30;

export interface ExpiryOptions {
  readonly maxAgeMs: number;
  /** Default: an hour, or the age limit when that is shorter. */
  readonly intervalMs?: number;
  readonly logger: Logger;
}

export interface RunningExpiry {
  /** One pass now (also what the timer runs). */
  runOnce(): Promise<number>;
  stop(): Promise<void>;
}

export function startExpiry(core: RelayCore, o: ExpiryOptions): RunningExpiry {
  const log = o.logger.child('expiry');
  let running: Promise<number> | undefined;
  const runOnce = (): Promise<number> => {
    running ??= core
      .expire(o.maxAgeMs)
      .then((per) => {
        const n = per.reduce((s, d) => s + d.items, 0);
        for (const d of per)
          log.info('items past the age limit deleted', {
            deviceId: d.deviceId,
            items: d.items,
            bytes: d.bytes,
          });
        return n;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const tick = (): void => {
    runOnce().catch((e: unknown) => {
      log.error('age-limit pass failed', { err: e });
    });
  };
  tick();
  const timer = setInterval(tick, o.intervalMs ?? Math.min(3_600_000, o.maxAgeMs));
  timer.unref();
  return {
    runOnce,
    async stop(): Promise<void> {
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}
