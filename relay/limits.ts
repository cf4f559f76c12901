/**
 * Abuse controls: size limits, caps on what one party can make the relay hold
 * (storage, live memory, accounts, pairing offers, connections), per-principal
 * token-bucket rate limits, and the brute-force lockout. Counters live in
 * memory: a restart forgives (the secrets being guessed are 256-bit, so the
 * lockout is about load and noise, not about making guessing feasible or not).
 * With several relay processes on PostgreSQL, failed authentications are
 * shared (every process counts every failure, and a starting one counts those
 * of the window); rate limits and registration counts stay per process.
 * docs/relay.md has the table of defaults.
 */
export interface RelayLimits {
  /** Largest body of one append (bytes). */
  readonly maxAppendBytes: number;
  /** Largest item (bytes, summed over its appends). */
  readonly maxItemBytes: number;
  /** Ciphertext a device may have stored on the relay at once (bytes). */
  readonly maxDeviceBytes: number;
  /** Items (and up-messages) a device may have stored at once. */
  readonly maxDeviceItems: number;
  /** Largest phone -> hub message (bytes). */
  readonly maxMessageBytes: number;
  /** Largest JSON body (bytes). */
  readonly maxJsonBytes: number;
  /** Largest live record (bytes) and the live window kept per device (bytes). */
  readonly maxLiveRecordBytes: number;
  readonly liveWindowBytes: number;
  /** Live records held in memory over all devices (bytes). */
  readonly liveTotalBytes: number;
  /** A live item without a new record for this long may be dropped when memory is short (ms). */
  readonly liveIdleMs: number;
  /** Most bytes returned by one read (clients continue at the next offset). */
  readonly maxReadBytes: number;
  /** Longest long-poll wait (ms). */
  readonly maxWaitMs: number;
  /** Requests per second per principal (or per address before authentication), and burst. */
  readonly ratePerSec: number;
  readonly rateBurst: number;
  /** Failed authentications per address within `lockoutWindowMs` before the address is locked. */
  readonly lockoutFailures: number;
  /** Failures against one account (from any addresses) within the window before it is guarded. */
  readonly lockoutTargetFailures: number;
  readonly lockoutWindowMs: number;
  readonly lockoutMs: number;
  /** Device accounts the relay holds at most, and registrations per address within the window. */
  readonly maxDevices: number;
  readonly maxRegistrationsPerAddress: number;
  readonly registrationWindowMs: number;
  /** Live pairing offers per device (a new one replaces the oldest). */
  readonly maxOffersPerDevice: number;
  /** Open connections per client address (in-flight requests per address behind a trusted proxy). */
  readonly maxConnectionsPerAddress: number;
  /**
   * Slowest accepted request body (bytes/s): a request must arrive whole within
   * the header timeout plus the largest append at this rate.
   */
  readonly minBodyBytesPerSec: number;
  readonly headersTimeoutMs: number;
  /** Disk space held back for metadata, so acknowledgements still work on a full disk (bytes). */
  readonly storageReserveBytes: number;
  /** Phones per device. */
  readonly maxPhones: number;
  /** Pairing rendezvous lifetime default (ms). */
  readonly rendezvousTtlMs: number;
  /** How long deleted item ids are remembered so a late retry cannot resurrect them (ms). */
  readonly tombstoneMs: number;
}

export const DEFAULT_LIMITS: RelayLimits = {
  maxAppendBytes: 4 * 1024 * 1024,
  maxItemBytes: 512 * 1024 * 1024,
  maxDeviceBytes: 4 * 1024 * 1024 * 1024,
  maxDeviceItems: 20_000,
  maxMessageBytes: 256 * 1024,
  maxJsonBytes: 8 * 1024,
  maxLiveRecordBytes: 1024 * 1024,
  liveWindowBytes: 8 * 1024 * 1024,
  liveTotalBytes: 256 * 1024 * 1024,
  liveIdleMs: 2 * 60_000,
  maxReadBytes: 8 * 1024 * 1024,
  maxWaitMs: 30_000,
  ratePerSec: 200,
  rateBurst: 400,
  lockoutFailures: 10,
  lockoutTargetFailures: 50,
  lockoutWindowMs: 10 * 60_000,
  lockoutMs: 15 * 60_000,
  maxDevices: 10_000,
  maxRegistrationsPerAddress: 20,
  registrationWindowMs: 3600_000,
  maxOffersPerDevice: 8,
  maxConnectionsPerAddress: 128,
  minBodyBytesPerSec: 32 * 1024,
  headersTimeoutMs: 20_000,
  storageReserveBytes: 4 * 1024 * 1024,
  maxPhones: 16,
  rendezvousTtlMs: 15 * 60_000,
  tombstoneMs: 7 * 24 * 3600_000,
};

/** The whole-request timeout: headers, then the largest append at the slowest accepted rate. */
export function requestTimeoutMs(l: RelayLimits): number {
  return l.headersTimeoutMs + Math.ceil((l.maxAppendBytes / l.minBodyBytesPerSec) * 1000);
}

/** Token buckets keyed by principal or address. */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(ratePerSec: number, burst: number, now: () => number = Date.now) {
    this.#rate = ratePerSec;
    this.#burst = burst;
    this.#now = now;
  }

  /** Take one token; returns 0 when allowed, else the ms to wait. */
  take(key: string): number {
    const now = this.#now();
    const b = this.#buckets.get(key) ?? { tokens: this.#burst, at: now };
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
    b.at = now;
    this.#buckets.set(key, b);
    if (this.#buckets.size > 100_000) this.#prune(now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / this.#rate) * 1000);
  }

  #prune(now: number): void {
    for (const [k, b] of this.#buckets)
      if (now - b.at > (this.#burst / this.#rate) * 1000) this.#buckets.delete(k);
  }
}

/**
 * Brute-force lockout. Failures (wrong credentials, unknown rendezvous claims,
 * bad enrollment tokens, offers of a pairing token in use) are counted per
 * client address and, where the attempt names one, per target (the account it
 * tried). A success erases nothing: failures only age out of the window, so
 * mixing valid requests of one's own account between guesses gains nothing.
 *
 *  - An address with `failures` failures within the window is locked for `lockMs`
 *    (every request from it is refused, even with correct credentials).
 *  - A target with `targetFailures` failures within the window (from any
 *    addresses) is guarded for `lockMs`: one failure against it then locks the
 *    failing address at once, so a guesser spread over many addresses spends an
 *    address per guess. The target itself is never locked: correct credentials
 *    keep working, so nobody can lock a real device out by naming it.
 */
export class Lockout {
  readonly #failures: number;
  readonly #targetFailures: number;
  readonly #windowMs: number;
  readonly #lockMs: number;
  readonly #now: () => number;
  readonly #addrs = new Map<string, { fails: number[]; lockedUntil: number }>();
  readonly #targets = new Map<string, { fails: number[]; guardedUntil: number }>();

  constructor(
    failures: number,
    windowMs: number,
    lockMs: number,
    now: () => number = Date.now,
    targetFailures: number = failures * 5,
  ) {
    this.#failures = failures;
    this.#targetFailures = targetFailures;
    this.#windowMs = windowMs;
    this.#lockMs = lockMs;
    this.#now = now;
  }

  /** ms the address stays locked (0 = not locked). */
  lockedFor(addr: string): number {
    const e = this.#addrs.get(addr);
    if (!e) return 0;
    return Math.max(0, e.lockedUntil - this.#now());
  }

  /** ms the target stays guarded (0 = not guarded). */
  guardedFor(target: string): number {
    const e = this.#targets.get(target);
    if (!e) return 0;
    return Math.max(0, e.guardedUntil - this.#now());
  }

  /**
   * Record a failure from `addr` (against `target`, when known); true when it
   * locked the address. `at`: when it happened, for a failure another relay
   * process saw (default now).
   */
  fail(addr: string, target?: string, at?: number): boolean {
    const now = at ?? this.#now();
    if (this.#addrs.size + this.#targets.size > 100_000) this.#prune(now);
    let guarded = false;
    if (target !== undefined) {
      const t = this.#targets.get(target) ?? { fails: [], guardedUntil: 0 };
      guarded = t.guardedUntil > now;
      t.fails = this.#recent(t.fails, now, this.#targetFailures);
      t.fails.push(now);
      if (t.fails.length >= this.#targetFailures) {
        t.guardedUntil = now + this.#lockMs;
        t.fails = [];
      }
      this.#targets.set(target, t);
    }
    const e = this.#addrs.get(addr) ?? { fails: [], lockedUntil: 0 };
    e.fails = this.#recent(e.fails, now, this.#failures);
    e.fails.push(now);
    this.#addrs.set(addr, e);
    if (guarded || e.fails.length >= this.#failures) {
      e.lockedUntil = Math.max(e.lockedUntil, now + this.#lockMs);
      e.fails = [];
      return true;
    }
    return false;
  }

  /** Failures still inside the window, at most `keep` of them (the newest). */
  #recent(fails: number[], now: number, keep: number): number[] {
    return fails.filter((t) => now - t < this.#windowMs).slice(-keep);
  }

  #prune(now: number): void {
    for (const [k, e] of this.#addrs)
      if (e.lockedUntil <= now && e.fails.every((t) => now - t >= this.#windowMs))
        this.#addrs.delete(k);
    for (const [k, e] of this.#targets)
      if (e.guardedUntil <= now && e.fails.every((t) => now - t >= this.#windowMs))
        this.#targets.delete(k);
  }
}

/** Events per key within a sliding window (e.g. device registrations per address). */
export class WindowCounter {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #hits = new Map<string, number[]>();

  constructor(max: number, windowMs: number, now: () => number = Date.now) {
    this.#max = max;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** Count one event for `key`; returns 0 when allowed, else the ms until one is. */
  take(key: string): number {
    const now = this.#now();
    if (this.#hits.size > 100_000)
      for (const [k, v] of this.#hits)
        if (v.every((t) => now - t >= this.#windowMs)) this.#hits.delete(k);
    const recent = (this.#hits.get(key) ?? []).filter((t) => now - t < this.#windowMs);
    if (recent.length >= this.#max) {
      this.#hits.set(key, recent);
      return Math.max(1, (recent[0] ?? now) + this.#windowMs - now);
    }
    recent.push(now);
    this.#hits.set(key, recent);
    return 0;
  }
}
