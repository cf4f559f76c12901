/**
 * Abuse controls: size limits, per-principal token-bucket rate limits, and a
 * per-address brute-force lockout. All in memory: a restart forgives (the
 * secrets being guessed are 256-bit, so the lockout is about load and noise,
 * not about making guessing feasible or not).
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
  /** Most bytes returned by one read (clients continue at the next offset). */
  readonly maxReadBytes: number;
  /** Longest long-poll wait (ms). */
  readonly maxWaitMs: number;
  /** Requests per second per principal (or per address before authentication), and burst. */
  readonly ratePerSec: number;
  readonly rateBurst: number;
  /** Failed authentications per address within `lockoutWindowMs` before the address is locked. */
  readonly lockoutFailures: number;
  readonly lockoutWindowMs: number;
  readonly lockoutMs: number;
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
  maxReadBytes: 8 * 1024 * 1024,
  maxWaitMs: 30_000,
  ratePerSec: 200,
  rateBurst: 400,
  lockoutFailures: 10,
  lockoutWindowMs: 10 * 60_000,
  lockoutMs: 15 * 60_000,
  maxPhones: 16,
  rendezvousTtlMs: 15 * 60_000,
  tombstoneMs: 7 * 24 * 3600_000,
};

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

/** Counts failed authentications per address and locks addresses that fail too often. */
export class Lockout {
  readonly #failures: number;
  readonly #windowMs: number;
  readonly #lockMs: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { fails: number[]; lockedUntil: number }>();

  constructor(failures: number, windowMs: number, lockMs: number, now: () => number = Date.now) {
    this.#failures = failures;
    this.#windowMs = windowMs;
    this.#lockMs = lockMs;
    this.#now = now;
  }

  /** ms the address stays locked (0 = not locked). */
  lockedFor(addr: string): number {
    const e = this.#entries.get(addr);
    if (!e) return 0;
    return Math.max(0, e.lockedUntil - this.#now());
  }

  /** Record a failure; returns true when this failure locked the address. */
  fail(addr: string): boolean {
    const now = this.#now();
    const e = this.#entries.get(addr) ?? { fails: [], lockedUntil: 0 };
    e.fails = e.fails.filter((t) => now - t < this.#windowMs);
    e.fails.push(now);
    this.#entries.set(addr, e);
    if (e.fails.length >= this.#failures) {
      e.lockedUntil = now + this.#lockMs;
      e.fails = [];
      return true;
    }
    return false;
  }

  succeed(addr: string): void {
    const e = this.#entries.get(addr);
    if (e && e.lockedUntil <= this.#now()) this.#entries.delete(addr);
  }
}
