/**
 * The hub's side of the meeting at the relay, kept trying until it works.
 *
 * At the end of pairing the hub registers its device account at the relay (once) and offers
 * the phone's pairing token there; the phone claims it. The relay may be unreachable at that
 * moment (the home network's route or DNS not up yet, the relay restarting, a power cut on the
 * router): then the meeting is retried with a capped exponential backoff until it succeeds or
 * the hub stops. The token is persisted (inside the data volume) until the offer is made, so a
 * restart resumes the meeting; without a token (a hub paired before, whose account was never
 * created) only the registration is retried.
 *
 * Time comes through the `Clock` port (tests drive it by hand); `stop()` cancels the timer and
 * aborts the attempt in flight, so a SIGTERM is not held up by a relay that does not answer.
 */
import { EventEmitter } from 'node:events';
import { reasonOf } from '../../base/errors.js';
import { httpRequest } from '../../base/http.js';
import type { HttpRequester } from '../../base/http.js';
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import type { Logger } from '../../base/logger.js';
import { SILENT } from '../../base/logger.js';
import { RelayClient } from '../../protocol/relay-client.js';

/** The hub's device account at a relay (inside the data volume). */
export interface RelayAccountRecord {
  readonly url: string;
  readonly deviceId: string;
  readonly token: string;
}

/**
 * One attempt of the meeting: register the device account at `relay` unless `saved` is an
 * account there (one at another relay, before the phone chose a new one, does not count),
 * `save` it, then offer the pairing token when there is one. Every request ends with `signal`.
 */
export async function registerAndOffer(o: {
  readonly relay: { readonly url: string; readonly enrollToken?: string | undefined };
  readonly deviceId: string;
  readonly saved: RelayAccountRecord | undefined;
  readonly save: (acct: RelayAccountRecord) => Promise<void>;
  readonly token: string | undefined;
  readonly signal: AbortSignal;
  readonly http?: HttpRequester;
}): Promise<RelayAccountRecord> {
  const inner = o.http ?? httpRequest;
  const anon = new RelayClient({
    url: o.relay.url,
    http: (url, init) =>
      inner(url, {
        ...init,
        signal: init?.signal ? AbortSignal.any([init.signal, o.signal]) : o.signal,
      }),
  });
  let acct = o.saved?.url === o.relay.url ? o.saved : undefined;
  if (!acct) {
    const { token } = await anon.registerDevice(o.deviceId, o.relay.enrollToken);
    acct = { url: o.relay.url, deviceId: o.deviceId, token };
    await o.save(acct);
  }
  if (o.token !== undefined) await anon.withToken(acct.token).offerRendezvous(o.token);
  return acct;
}

export interface RelayMeetingDeps {
  /**
   * One attempt: register the device account if needed, then offer `token` when there is one.
   * Must honour `signal` (abort the requests in flight).
   */
  readonly attempt: (token: string | undefined, signal: AbortSignal) => Promise<void>;
  /** Where the token waits for its offer (inside the data volume); none: kept in memory only. */
  readonly store?: {
    load(): Promise<string | undefined>;
    save(token: string): Promise<void>;
    clear(): Promise<void>;
  };
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** First retry delay and its cap (ms); doubles in between. */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
}

export type RelayMeetingState = 'idle' | 'trying' | 'waiting' | 'met' | 'stopped';

export interface RelayMeetingStatus {
  readonly state: RelayMeetingState;
  /** Failed attempts since the meeting (re)started. */
  readonly failures: number;
  readonly lastError: string | undefined;
  /** When the next attempt is due (ms since the epoch of the clock), while waiting. */
  readonly nextAttemptAt: number | undefined;
}

export const DEFAULT_MEETING_BACKOFF = { initialMs: 2000, maxMs: 60_000 } as const;

/** The delay before retry number `failures` (1 = the first retry): doubling, capped. */
export function meetingDelayMs(
  failures: number,
  backoff: { readonly initialMs: number; readonly maxMs: number } = DEFAULT_MEETING_BACKOFF,
): number {
  const exp = Math.min(Math.max(failures - 1, 0), 30);
  return Math.min(backoff.initialMs * 2 ** exp, backoff.maxMs);
}

export class RelayMeeting extends EventEmitter<{ met: []; failed: [string] }> {
  readonly #d: RelayMeetingDeps;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #backoff: { initialMs: number; maxMs: number };
  #state: RelayMeetingState = 'idle';
  #token: string | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #nextAt: number | undefined;
  #timer: { cancel(): void } | undefined;
  #ac: AbortController | undefined;
  #inFlight: Promise<boolean> | undefined;
  /** Bumped by every (re)start and stop: an attempt of an older generation changes nothing. */
  #gen = 0;

  constructor(deps: RelayMeetingDeps) {
    super();
    this.#d = deps;
    this.#clock = deps.clock ?? SYSTEM_CLOCK;
    this.#log = (deps.logger ?? SILENT).child('relay-meeting');
    this.#backoff = {
      initialMs: deps.backoff?.initialMs ?? DEFAULT_MEETING_BACKOFF.initialMs,
      maxMs: deps.backoff?.maxMs ?? DEFAULT_MEETING_BACKOFF.maxMs,
    };
  }

  get state(): RelayMeetingState {
    return this.#state;
  }

  status(): RelayMeetingStatus {
    return {
      state: this.#state,
      failures: this.#failures,
      lastError: this.#lastError,
      nextAttemptAt: this.#nextAt,
    };
  }

  /**
   * Meet at the relay with `token` (the end of a pairing; undefined: resume the persisted
   * token, or only register). Resolves after the first attempt: `met`, or `retrying` (later
   * attempts run in the background until one works or `stop()`).
   */
  async start(token?: string): Promise<'met' | 'retrying'> {
    await this.#halt();
    const gen = ++this.#gen;
    if (token !== undefined) await this.#d.store?.save(token);
    this.#token = token ?? (await this.#d.store?.load());
    if (gen !== this.#gen) return 'retrying';
    this.#failures = 0;
    this.#lastError = undefined;
    return (await this.#attempt(gen)) ? 'met' : 'retrying';
  }

  /** Resolves once met; rejects when stopped first (or `signal` aborts). */
  whenMet(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'met') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.off('met', done);
        signal?.removeEventListener('abort', abort);
        resolve();
      };
      const abort = (): void => {
        this.off('met', done);
        reject(new Error('stopped waiting for the relay meeting'));
      };
      this.on('met', done);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  /** Cancel the next attempt and abort the one in flight (shutdown, services stopping). */
  async stop(): Promise<void> {
    this.#gen++;
    await this.#halt();
    if (this.#state !== 'met') this.#state = 'stopped';
  }

  async #halt(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#nextAt = undefined;
    this.#ac?.abort();
    await this.#inFlight?.catch(() => undefined);
  }

  async #attempt(gen: number): Promise<boolean> {
    const ac = new AbortController();
    this.#ac = ac;
    this.#state = 'trying';
    const run = (async (): Promise<boolean> => {
      try {
        await this.#d.attempt(this.#token, ac.signal);
      } catch (e) {
        if (gen !== this.#gen) return false;
        this.#failures += 1;
        this.#lastError = reasonOf(e);
        const delay = meetingDelayMs(this.#failures, this.#backoff);
        this.#log.warn('relay meeting failed; retrying', {
          failures: this.#failures,
          retryInMs: delay,
          error: this.#lastError,
        });
        this.emit('failed', this.#lastError);
        this.#schedule(gen, delay);
        return false;
      }
      if (gen !== this.#gen) return false;
      if (this.#token !== undefined)
        await this.#d.store?.clear().catch((e: unknown) => {
          this.#log.warn('could not forget the offered pairing token', { error: e });
        });
      this.#state = 'met';
      this.#log.info('met at the relay', { afterFailures: this.#failures });
      this.emit('met');
      return true;
    })();
    this.#inFlight = run;
    try {
      return await run;
    } finally {
      if (this.#ac === ac) this.#ac = undefined;
    }
  }

  #schedule(gen: number, delay: number): void {
    this.#state = 'waiting';
    this.#nextAt = this.#clock.now() + delay;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#nextAt = undefined;
      if (gen === this.#gen) void this.#attempt(gen);
    }, delay);
  }
}
