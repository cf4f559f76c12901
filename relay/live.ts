/**
 * The live window: per device, the records of its current live item, in
 * memory only. Record 0 (the container header) and record 1 (by convention the
 * stream's initialisation segment) are never evicted; older middle records go
 * first when the window is full. A new live item replaces the previous one.
 * Transport- and wait-free: the core wraps `next` in a long-poll.
 */
import type { LiveInfo } from '../protocol/relay-api.js';

interface LiveSession {
  itemId: string;
  records: Map<number, Buffer>;
  bytes: number;
  next: number;
  complete: boolean;
  finalIndex: number | undefined;
}

export interface LiveRecord {
  readonly itemId: string;
  readonly index: number;
  readonly final: boolean;
  readonly data: Buffer;
}

export class LiveWindow {
  readonly #windowBytes: number;
  readonly #sessions = new Map<string, LiveSession>();

  constructor(windowBytes: number) {
    this.#windowBytes = windowBytes;
  }

  append(deviceId: string, itemId: string, index: number, final: boolean, body: Buffer): LiveInfo {
    let s = this.#sessions.get(deviceId);
    if (s?.itemId !== itemId) {
      s = { itemId, records: new Map(), bytes: 0, next: 0, complete: false, finalIndex: undefined };
      this.#sessions.set(deviceId, s);
    }
    if (!s.records.has(index)) {
      s.records.set(index, body);
      s.bytes += body.length;
    }
    s.next = Math.max(s.next, index + 1);
    if (final) {
      s.complete = true;
      s.finalIndex = index;
    }
    // Evict oldest records past the window, but keep the header (index 0) and the
    // first chunk (index 1: by convention it carries the stream's initialisation
    // segment), so a viewer joining late can still start decoding.
    if (s.bytes > this.#windowBytes) {
      const order = [...s.records.keys()].filter((i) => i > 1).sort((a, b) => a - b);
      for (const i of order) {
        if (s.bytes <= this.#windowBytes) break;
        s.bytes -= s.records.get(i)?.length ?? 0;
        s.records.delete(i);
      }
    }
    return infoOf(s);
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
