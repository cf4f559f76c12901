/**
 * The companion's schedule (`vigil app view`, `vigil app sync --follow`):
 * a heartbeat to the hub every `heartbeatMs` (default 1 h), and in it a
 * post-compromise refresh by re-add (fresh key packages, app/e2ee) for each
 * item group whose last refresh is older than `refreshMs` (default 7 days).
 * No manual step: the heartbeat carries acks and epoch checks as well.
 *
 * When each group was last refreshed is kept in <dir>/schedule.json (atomic
 * writes), so a companion that restarts daily still refreshes weekly. A send
 * that fails is retried at the next beat; the refresh dates move only once the
 * heartbeat that carried the key packages was accepted by the relay.
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { Clock } from '../base/clock.js';
import { SYSTEM_CLOCK } from '../base/clock.js';
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { DurableFs } from '../hw/os/fs.js';

export const REFRESH_GROUPS = ['motion', 'thumbnail', 'livestream'] as const;
export type RefreshGroup = (typeof REFRESH_GROUPS)[number];

export const DEFAULT_HEARTBEAT_MS = 60 * 60_000;
export const DEFAULT_REFRESH_MS = 7 * 24 * 60 * 60_000;

const StateFile = z.strictObject({
  v: z.literal(1),
  refreshedAt: z.record(z.enum(REFRESH_GROUPS), z.number().int().min(0)),
});
type Refreshed = Partial<Record<RefreshGroup, number>>;

export interface FollowOptions {
  /** Seal a heartbeat (with refresh key packages for `refresh`) and post it up. */
  readonly sendHeartbeat: (refresh: readonly RefreshGroup[]) => Promise<void>;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly heartbeatMs?: number;
  readonly refreshMs?: number;
  /** Where schedule.json is kept; without it the dates live in memory only. */
  readonly dir?: string;
  readonly fs?: DurableFs;
}

/** Which groups are due for a refresh at `now` (a group never refreshed counts from `start`). */
export function dueRefresh(
  refreshed: Refreshed,
  now: number,
  refreshMs: number,
  start: number,
): RefreshGroup[] {
  return REFRESH_GROUPS.filter((g) => now - (refreshed[g] ?? start) >= refreshMs);
}

export class FollowScheduler {
  readonly #o: FollowOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  #refreshed: Refreshed = {};
  #start = 0;
  #timer: { cancel(): void } | undefined;
  #running = false;
  #inFlight: Promise<void> | undefined;
  beats = 0;
  refreshes = 0;

  constructor(o: FollowOptions) {
    this.#o = o;
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    this.#log = o.logger.child('follow');
  }

  get heartbeatMs(): number {
    return this.#o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  }

  /** Load the refresh dates, send the first heartbeat now, then keep the schedule. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#start = this.#clock.now();
    this.#refreshed = await this.#load();
    this.#tick();
  }

  /** Stop the schedule; waits for a heartbeat in flight. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#timer?.cancel();
    this.#timer = undefined;
    await this.#inFlight;
  }

  /** Resolves when the heartbeat in flight (if any) is done. */
  idle(): Promise<void> {
    return this.#inFlight ?? Promise.resolve();
  }

  #tick(): void {
    if (!this.#running) return;
    this.#inFlight ??= this.#beat().finally(() => {
      this.#inFlight = undefined;
    });
    this.#timer = this.#clock.setTimeout(() => {
      this.#tick();
    }, this.heartbeatMs);
  }

  async #beat(): Promise<void> {
    const now = this.#clock.now();
    const due = dueRefresh(
      this.#refreshed,
      now,
      this.#o.refreshMs ?? DEFAULT_REFRESH_MS,
      this.#start,
    );
    try {
      await this.#o.sendHeartbeat(due);
    } catch (e) {
      this.#log.warn('scheduled heartbeat not sent; next beat retries', { err: reasonOf(e) });
      return;
    }
    this.beats++;
    if (due.length === 0) return;
    this.refreshes += due.length;
    const next = { ...this.#refreshed };
    for (const g of due) next[g] = now;
    this.#refreshed = next;
    this.#log.info('post-compromise refresh offered', { groups: due.join(',') });
    await this.#save().catch((e: unknown) => {
      this.#log.warn('schedule.json not written', { err: reasonOf(e) });
    });
  }

  #path(): string | undefined {
    return this.#o.dir !== undefined ? join(this.#o.dir, 'schedule.json') : undefined;
  }

  async #load(): Promise<Refreshed> {
    const path = this.#path();
    if (path === undefined || !this.#o.fs) return {};
    const raw = await this.#o.fs.readIfExists(path);
    if (!raw) return {};
    try {
      return StateFile.parse(JSON.parse(raw.toString('utf8'))).refreshedAt;
    } catch (e) {
      this.#log.warn('schedule.json unreadable; refresh dates start now', { err: reasonOf(e) });
      return {};
    }
  }

  async #save(): Promise<void> {
    const path = this.#path();
    if (path === undefined || !this.#o.fs) return;
    await this.#o.fs.writeFileAtomic(
      path,
      `${JSON.stringify({ v: 1, refreshedAt: this.#refreshed })}\n`,
      'app-schedule',
    );
  }
}
