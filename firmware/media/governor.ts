/**
 * Load governor: when the hub runs hot (CPU busy or SoC temperature above a
 * limit) it first lowers the detection/motion-analysis rate, then falls back
 * to motion-only (no detector), and returns to full once both readings are
 * back below the lower "recover" limits (hysteresis: the band between the
 * two limits changes nothing). Recording is never touched: the governor only
 * sets the analysis rate, the encoder and clip writer keep running.
 *
 * The phone is told once per change through the sealed `hub-health` notice
 * (`load-degraded` with the level in the detail, `recovered` on return).
 */
import { reasonOf } from '../../base/errors.js';
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import type { Logger } from '../../base/logger.js';
import { HUB_HEALTH_TOPIC, encodeControl } from '../../protocol/live-control.js';
import type { ConfigChannel } from '../mls/config-channel.js';
import type { LoadReading, LoadSensor } from '../../hw/load/load-sensor.js';

export type LoadLevel = 'full' | 'reduced' | 'motion-only';

export interface GovernorLimits {
  /** Degrade when the busy CPU share reaches this (0..1). */
  cpuHigh: number;
  /** Recover only once the busy CPU share is below this. */
  cpuLow: number;
  /** Degrade when the SoC reaches this temperature (°C). */
  tempHighC: number;
  /** Recover only once the SoC is below this (°C). */
  tempLowC: number;
  /** Analysis rate (frames/s) at `full` and at `reduced`; `motion-only` runs no detector. */
  fullFps: number;
  reducedFps: number;
}

export const DEFAULT_GOVERNOR_LIMITS: GovernorLimits = {
  cpuHigh: 0.9,
  cpuLow: 0.7,
  tempHighC: 80,
  tempLowC: 70,
  fullFps: 5,
  reducedFps: 1,
};

/** The next level after one reading (pure). One step down per hot reading; straight back up when cool. */
export function nextLevel(level: LoadLevel, r: LoadReading, l: GovernorLimits): LoadLevel {
  const hot = (r.cpu ?? 0) >= l.cpuHigh || (r.tempC ?? -Infinity) >= l.tempHighC;
  const cool = (r.cpu ?? 0) < l.cpuLow && (r.tempC ?? -Infinity) < l.tempLowC;
  if (hot) return level === 'full' ? 'reduced' : 'motion-only';
  if (cool) return 'full';
  return level;
}

/** Analysis rate for a level (frames/s); 0 means motion-only (no detector). */
export function analysisFps(level: LoadLevel, l: GovernorLimits): number {
  return level === 'full' ? l.fullFps : level === 'reduced' ? l.reducedFps : 0;
}

export class LoadGovernor {
  readonly #o: {
    sensor: LoadSensor;
    channel: Pick<ConfigChannel, 'sendApp'>;
    logger: Logger;
    limits: GovernorLimits;
    onLevel: (level: LoadLevel, fps: number) => void;
    clock: Clock;
  };
  #level: LoadLevel = 'full';

  constructor(o: {
    sensor: LoadSensor;
    channel: Pick<ConfigChannel, 'sendApp'>;
    logger: Logger;
    limits?: GovernorLimits;
    onLevel: (level: LoadLevel, fps: number) => void;
    clock?: Clock;
  }) {
    this.#o = {
      ...o,
      limits: o.limits ?? DEFAULT_GOVERNOR_LIMITS,
      clock: o.clock ?? SYSTEM_CLOCK,
      logger: o.logger.child('governor'),
    };
  }

  get level(): LoadLevel {
    return this.#level;
  }

  /** Take one reading and apply it; resolves to the (possibly new) level. */
  async tick(): Promise<LoadLevel> {
    const r = await this.#o.sensor.read();
    const next = nextLevel(this.#level, r, this.#o.limits);
    if (next === this.#level) return next;
    const was = this.#level;
    this.#level = next;
    const fps = analysisFps(next, this.#o.limits);
    this.#o.logger.info('load level changed', { from: was, to: next, cpu: r.cpu, tempC: r.tempC });
    this.#o.onLevel(next, fps);
    const body = encodeControl(HUB_HEALTH_TOPIC, {
      v: 1,
      at: Math.floor(this.#o.clock.now()),
      condition: next === 'full' ? 'recovered' : 'load-degraded',
      detail:
        next === 'full'
          ? 'load back to normal; full motion analysis'
          : next === 'reduced'
            ? `analysis lowered to ${fps} fps`
            : 'motion-only (detector paused)',
    });
    await this.#o.channel.sendApp(HUB_HEALTH_TOPIC, body).catch((err: unknown) => {
      this.#o.logger.warn('load notice not sent', { level: next, err: reasonOf(err) });
    });
    return next;
  }
}

/**
 * The governor wired to the media pipeline (issue #21): a reading every
 * `intervalS`, each level change applied to the pipeline's detector and
 * reported once to the phones. One reading at a time (a slow sysfs read
 * never piles up). Returns the stop function.
 */
export function startLoadGovernor(o: {
  media: { setAnalysisLevel(level: LoadLevel, fps: number): void };
  sensor: LoadSensor;
  channel: Pick<ConfigChannel, 'sendApp'>;
  logger: Logger;
  limits: GovernorLimits & { intervalS: number };
  clock?: Clock;
}): { stop(): void; readonly governor: LoadGovernor } {
  const governor = new LoadGovernor({
    sensor: o.sensor,
    channel: o.channel,
    logger: o.logger,
    limits: o.limits,
    ...(o.clock ? { clock: o.clock } : {}),
    onLevel: (level, fps) => {
      o.media.setAnalysisLevel(level, fps);
    },
  });
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    governor
      .tick()
      .catch((err: unknown) => {
        o.logger.warn('load reading failed', { err: reasonOf(err) });
      })
      .finally(() => {
        running = false;
      });
  }, o.limits.intervalS * 1000);
  timer.unref();
  return {
    governor,
    stop: () => {
      clearInterval(timer);
    },
  };
}
