/**
 * Runs the state machine: events are processed one at a time through the pure
 * `transition`, and the effects it returns are executed by injected handlers
 * with retry + exponential backoff and cancellation. A handler's outcome comes
 * back as events. Stopping aborts every effect still in flight.
 */
import { reasonOf } from '../../base/errors.js';
import { sleep } from '../../base/async.js';
import type { Logger } from '../../base/logger.js';
import { INITIAL_STATE, transition } from './state.js';
import type { Effect, Event, State } from './state.js';

type EffectOf<T extends Effect['type']> = Extract<Effect, { type: T }>;

export type EffectHandlers = {
  readonly [T in Effect['type']]: (
    effect: EffectOf<T>,
    signal: AbortSignal,
  ) => Promise<readonly Event[] | undefined>;
};

export interface RetryPolicy {
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, initialDelayMs: 200, maxDelayMs: 10_000 };

/** Exponential backoff with full jitter bounded below by half the step. */
export function backoffDelay(
  attempt: number,
  policy: Pick<RetryPolicy, 'initialDelayMs' | 'maxDelayMs'>,
  random = Math.random,
): number {
  const step = Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + (random() * step) / 2);
}

export interface ExecutorOptions {
  readonly handlers: EffectHandlers;
  readonly logger: Logger;
  readonly retry?: Partial<Readonly<Record<Effect['type'], RetryPolicy>>>;
  readonly onState?: (state: State, event: Event) => void;
}

export class Executor {
  #state: State = INITIAL_STATE;
  readonly #opts: ExecutorOptions;
  readonly #queue: Event[] = [];
  #draining = false;
  readonly #inflight = new Set<AbortController>();
  readonly #pending = new Set<Promise<void>>();
  readonly #history: { state: State['name']; event: Event['type'] }[] = [];
  #settle: (() => void) | undefined;
  readonly done: Promise<void>;

  constructor(opts: ExecutorOptions) {
    this.#opts = opts;
    this.done = new Promise((resolve) => {
      this.#settle = resolve;
    });
  }

  get state(): State {
    return this.#state;
  }

  /** Every (state entered, event) pair so far: for status and tests. */
  get history(): readonly { state: State['name']; event: Event['type'] }[] {
    return this.#history;
  }

  dispatch(event: Event): void {
    this.#queue.push(event);
    if (!this.#draining) this.#drain();
  }

  #drain(): void {
    this.#draining = true;
    try {
      for (let ev = this.#queue.shift(); ev !== undefined; ev = this.#queue.shift()) {
        const before = this.#state;
        const { state, effects } = transition(before, ev);
        this.#state = state;
        if (state !== before) {
          this.#history.push({ state: state.name, event: ev.type });
          this.#opts.onState?.(state, ev);
          if (state.name === 'stopping' || state.name === 'failed') this.#abortAll();
        }
        for (const eff of effects) this.#start(eff);
      }
    } finally {
      this.#draining = false;
    }
  }

  #abortAll(): void {
    for (const c of this.#inflight) c.abort(new Error('supervisor stopping'));
  }

  #start(effect: Effect): void {
    const ctrl = new AbortController();
    // shutdown must not be cancelled by the stop it implements
    if (effect.type !== 'shutdown') this.#inflight.add(ctrl);
    const p = this.#runWithRetry(effect, ctrl.signal).finally(() => {
      this.#inflight.delete(ctrl);
      this.#pending.delete(p);
    });
    this.#pending.add(p);
  }

  async #runWithRetry(effect: Effect, signal: AbortSignal): Promise<void> {
    const policy = this.#opts.retry?.[effect.type] ?? DEFAULT_RETRY;
    const log = this.#opts.logger;
    for (let attempt = 1; ; attempt++) {
      try {
        const handler = this.#opts.handlers[effect.type] as (
          e: Effect,
          s: AbortSignal,
        ) => Promise<readonly Event[] | undefined>;
        const events = await handler(effect, signal);
        if (effect.type === 'shutdown') this.#settle?.();
        if (!signal.aborted) for (const e of events ?? []) this.dispatch(e);
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (attempt >= policy.attempts) {
          log.error('effect failed', { effect: effect.type, attempts: attempt, error: err });
          if (effect.type === 'shutdown') {
            this.#settle?.();
            return;
          }
          this.dispatch({ type: 'fatal-error', reason: `${effect.type} failed: ${reasonOf(err)}` });
          return;
        }
        const delay = backoffDelay(attempt, policy);
        log.warn('effect failed, retrying', {
          effect: effect.type,
          attempt,
          delayMs: delay,
          error: err,
        });
        try {
          await sleep(delay, signal);
        } catch {
          return;
        }
      }
    }
  }

  /** Wait for every running effect to finish (tests). */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }
}

/** Kept for the callers that import it from here. */
export { sleep };
