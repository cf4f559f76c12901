/**
 * Long-build UX: a build is a list of named stages. Each prints when it starts
 * and how long it took; a stage still running prints a heartbeat with its
 * elapsed time; a failure is rethrown as a StageError that names the stage.
 */
import { VigilError, reasonOf } from '../base/errors.js';

export class StageError extends VigilError {
  readonly stage: string;
  constructor(stage: string, cause: unknown) {
    super('ESTAGE', `stage "${stage}" failed: ${reasonOf(cause)}`, { cause });
    this.name = 'StageError';
    this.stage = stage;
  }
}

export interface StageTiming {
  readonly name: string;
  readonly seconds: number;
}

export interface StageClock {
  now(): number;
}

export interface StageRunnerOptions {
  readonly print: (line: string) => void;
  readonly total: number;
  readonly clock?: StageClock;
  /** Heartbeat period for long stages (ms); 0 disables. Default 60 s. */
  readonly heartbeatMs?: number;
}

function fmt(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const m = Math.floor(seconds / 60);
  return `${m}m${String(Math.round(seconds - m * 60)).padStart(2, '0')}s`;
}

export class StageRunner {
  readonly timings: StageTiming[] = [];
  readonly #opts: StageRunnerOptions;
  readonly #clock: StageClock;
  readonly #t0: number;
  #index = 0;

  constructor(opts: StageRunnerOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? { now: () => performance.now() };
    this.#t0 = this.#clock.now();
  }

  /** Seconds since the runner was created. */
  elapsed(): number {
    return (this.#clock.now() - this.#t0) / 1000;
  }

  async stage<T>(name: string, what: string, body: () => Promise<T>): Promise<T> {
    this.#index += 1;
    const tag = `[${this.#index}/${this.#opts.total}] ${name}`;
    this.#opts.print(`==> ${tag}: ${what}`);
    const start = this.#clock.now();
    const hb = this.#opts.heartbeatMs ?? 60_000;
    const timer =
      hb > 0
        ? setInterval(() => {
            this.#opts.print(
              `    ${tag}: still running (${fmt((this.#clock.now() - start) / 1000)})`,
            );
          }, hb)
        : undefined;
    timer?.unref();
    try {
      const result = await body();
      const secs = (this.#clock.now() - start) / 1000;
      this.timings.push({ name, seconds: secs });
      this.#opts.print(`    ${tag}: done in ${fmt(secs)} (total ${fmt(this.elapsed())})`);
      return result;
    } catch (err) {
      const secs = (this.#clock.now() - start) / 1000;
      this.#opts.print(`!!! ${tag}: FAILED after ${fmt(secs)}: ${reasonOf(err)}`);
      throw err instanceof StageError ? err : new StageError(name, err);
    } finally {
      if (timer) clearInterval(timer);
    }
  }

  summary(): string {
    return (
      this.timings.map((t) => `${t.name} ${fmt(t.seconds)}`).join(', ') +
      `; total ${fmt(this.elapsed())}`
    );
  }
}

export { fmt as formatSeconds };
