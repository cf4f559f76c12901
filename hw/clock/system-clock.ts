/**
 * The system clock (a Pi has no RTC: after a power cut it boots with the time
 * fake-hwclock saved at the last clean shutdown, or the build date).
 *
 * Port: `SystemClock` (read, set). Real adapter: `DateCommandClock`, which
 * sets the kernel clock with `date -u -s @<seconds>` (util-linux/coreutils,
 * argv only) and then saves it with `fake-hwclock save` when that tool is
 * installed, so the next boot starts from it. Fake: `FakeSystemClock`.
 * The decision whether to set it at all is firmware/pairing/time-sync.ts.
 */
import { VigilError } from '../../base/errors.js';
import { run as defaultRun, which as defaultWhich } from '../os/run.js';
import type { RunOptions, RunResult } from '../os/run.js';

export class ClockError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ECLOCK', message, options);
    this.name = 'ClockError';
  }
}

export interface SystemClock {
  now(): number;
  /** Set the wall clock to `ms` (Unix epoch milliseconds). */
  set(ms: number, signal?: AbortSignal): Promise<void>;
}

export interface DateCommandClockDeps {
  readonly run?: (cmd: string, argv: readonly string[], o?: RunOptions) => Promise<RunResult>;
  readonly which?: (cmd: string) => Promise<string | null>;
  /** The `date` program (default: found in PATH). */
  readonly dateCommand?: string;
}

export class DateCommandClock implements SystemClock {
  readonly #run: NonNullable<DateCommandClockDeps['run']>;
  readonly #which: NonNullable<DateCommandClockDeps['which']>;
  readonly #date: string;

  constructor(deps: DateCommandClockDeps = {}) {
    this.#run = deps.run ?? defaultRun;
    this.#which = deps.which ?? defaultWhich;
    this.#date = deps.dateCommand ?? 'date';
  }

  now(): number {
    return Date.now();
  }

  async set(ms: number, signal?: AbortSignal): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new ClockError(`not a time: ${String(ms)}`);
    const sec = Math.floor(ms / 1000);
    try {
      await this.#run(this.#date, ['-u', '-s', `@${sec}`], {
        timeoutMs: 10_000,
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      throw new ClockError(`cannot set the system clock (date -u -s @${sec})`, { cause: e });
    }
    // Persist for the next boot; without fake-hwclock (a dev box) there is nothing to save to.
    if ((await this.#which('fake-hwclock')) !== null) {
      try {
        await this.#run('fake-hwclock', ['save', 'force'], {
          timeoutMs: 10_000,
          ...(signal ? { signal } : {}),
        });
      } catch (e) {
        throw new ClockError('clock set, but fake-hwclock save failed', { cause: e });
      }
    }
  }
}

/** In-memory clock (tests): `now()` moves with real time from the last `set`. */
export class FakeSystemClock implements SystemClock {
  #offset: number;
  readonly sets: number[] = [];

  constructor(startMs = Date.now()) {
    this.#offset = startMs - Date.now();
  }

  now(): number {
    return Date.now() + this.#offset;
  }

  set(ms: number): Promise<void> {
    this.sets.push(ms);
    this.#offset = ms - Date.now();
    return Promise.resolve();
  }
}
