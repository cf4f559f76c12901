/**
 * The live window: per device, the records of its current live item, in
 * memory only. Record 0 (the container header) and record 1 (by convention the
 * stream's initialisation segment) are never evicted; older middle records go
 * first when the window is full. A new live item replaces the previous one.
 * Transport- and wait-free: the core wraps `next` in a long-poll.
 *
 * Memory is also bounded over all devices (`totalBytes`). When a record would
 * pass it, room is made in this order: live items idle for `idleMs` are
 * dropped whole (the longest idle first), then middle records of the largest
 * window go (its oldest first); when headers alone fill the memory, the record
 * is refused (503 ELIVEFULL, the hub drops it as it drops frames under back-pressure).
 */
import type { LiveInfo } from '../protocol/relay-api.js';
import { RelayError } from './errors.js';

interface LiveSession {
  itemId: string;
  records: Map<number, Buffer>;
  bytes: number;
  next: number;
  complete: boolean;
  finalIndex: number | undefined;
  lastAt: number;
}

export interface LiveWindowOptions {
  /** Bytes kept per device. */
  readonly windowBytes: number;
  /** Bytes kept over all devices. */
  readonly totalBytes: number;
  /** A live item without a new record for this long is dropped first when memory is short. */
  readonly idleMs: number;
}

export interface LiveRecord {
  readonly itemId: string;
  readonly index: number;
  readonly final: boolean;
  readonly data: Buffer;
}

export class LiveWindow {
  readonly #opts: LiveWindowOptions;
  readonly #now: () => number;
  readonly #sessions = new Map<string, LiveSession>();
  #total = 0;

  constructor(opts: LiveWindowOptions, now: () => number = Date.now) {
    this.#opts = opts;
    this.#now = now;
  }

  /** Bytes of live records held over all devices. */
  get totalBytes(): number {
    return this.#total;
  }

  append(deviceId: string, itemId: string, index: number, final: boolean, body: Buffer): LiveInfo {
    const now = this.#now();
    let s = this.#sessions.get(deviceId);
    if (s && s.itemId !== itemId) {
      // a new live item replaces the previous one
      this.#sessions.delete(deviceId);
      this.#total -= s.bytes;
      s = undefined;
    }
    const adds = s?.records.has(index) ? 0 : body.length;
    if (this.#total + adds > this.#opts.totalBytes) {
      this.#makeRoom(this.#total + adds - this.#opts.totalBytes, deviceId, now);
      if (this.#total + adds > this.#opts.totalBytes)
        throw new RelayError(503, 'ELIVEFULL', 'the relay has no memory left for live video', {
          retryAfterMs: 1000,
        });
    }
    if (!s) {
      s = {
        itemId,
        records: new Map(),
        bytes: 0,
        next: 0,
        complete: false,
        finalIndex: undefined,
        lastAt: now,
      };
      this.#sessions.set(deviceId, s);
    }
    s.lastAt = now;
    if (!s.records.has(index)) {
      s.records.set(index, body);
      s.bytes += body.length;
      this.#total += body.length;
    }
    s.next = Math.max(s.next, index + 1);
    if (final) {
      s.complete = true;
      s.finalIndex = index;
    }
    // Evict oldest records past the window, but keep the header (index 0) and the
    // first chunk (index 1: by convention it carries the stream's initialisation
    // segment), so a viewer joining late can still start decoding.
    if (s.bytes > this.#opts.windowBytes) {
      const order = [...s.records.keys()].filter((i) => i > 1).sort((a, b) => a - b);
      for (const i of order) {
        if (s.bytes <= this.#opts.windowBytes) break;
        this.#evict(s, i);
      }
    }
    return infoOf(s);
  }

  #evict(s: LiveSession, index: number): void {
    const n = s.records.get(index)?.length ?? 0;
    s.records.delete(index);
    s.bytes -= n;
    this.#total -= n;
  }

  /** Free at least `need` bytes if possible (idle items, then the largest window's middle). */
  #makeRoom(need: number, forDevice: string, now: number): void {
    let freed = 0;
    const idle = [...this.#sessions.entries()]
      .filter(([id, s]) => id !== forDevice && now - s.lastAt >= this.#opts.idleMs)
      .sort((a, b) => a[1].lastAt - b[1].lastAt);
    for (const [id, s] of idle) {
      if (freed >= need) return;
      this.#sessions.delete(id);
      this.#total -= s.bytes;
      freed += s.bytes;
    }
    while (freed < need) {
      let biggest: LiveSession | undefined;
      let victim: number | undefined;
      for (const s of this.#sessions.values()) {
        const middle = [...s.records.keys()].filter((i) => i > 1);
        if (middle.length === 0 || (biggest && biggest.bytes >= s.bytes)) continue;
        biggest = s;
        victim = Math.min(...middle);
      }
      if (!biggest || victim === undefined) return;
      const before = this.#total;
      this.#evict(biggest, victim);
      freed += before - this.#total;
    }
  }

  info(deviceId: string): LiveInfo {
    return infoOf(this.#sessions.get(deviceId));
  }

  /**
   * Record 0 (the header) of the current live item when `itemId` is not the
   * current one or `after` is absent, else the first record with index > after
   * (gaps are dropped frames); undefined when there is none yet.
   */
  next(
    deviceId: string,
    itemId: string | undefined,
    after: number | undefined,
  ): LiveRecord | undefined {
    const s = this.#sessions.get(deviceId);
    if (!s) return undefined;
    const keys = [...s.records.keys()].sort((a, b) => a - b);
    let idx: number | undefined;
    if (itemId !== s.itemId || after === undefined) idx = keys[0];
    else idx = keys.find((k) => k > after);
    if (idx === undefined) return undefined;
    const data = s.records.get(idx);
    if (!data) return undefined;
    return { itemId: s.itemId, index: idx, final: s.finalIndex === idx, data };
  }
}

function infoOf(s: LiveSession | undefined): LiveInfo {
  if (!s) return { itemId: null, first: 0, next: 0, complete: false };
  const keys = [...s.records.keys()];
  return {
    itemId: s.itemId,
    first: keys.length ? Math.min(...keys) : s.next,
    next: s.next,
    complete: s.complete,
  };
}
