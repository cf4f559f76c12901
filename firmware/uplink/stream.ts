/**
 * The scheduled sender of the privacy modes (firmware/uplink/privacy.ts,
 * docs/relay.md "Privacy modes"). It replaces the uplink's "send at once"
 * loop for clips and thumbnails: the durable queue (queue.ts) still takes every
 * sealed byte first; this sender cuts the queued bytes into stream records
 * (protocol/stream-record.ts) and sends them on a clock.
 *
 * Lanes (each its own loop, so each lane's MLS messages reach a phone in the
 * order they were sealed):
 *  - data: records of clips and thumbnails (in queue order), sealed in each
 *    phone's `config` group, posted as relay `kind=message`, `group=config`;
 *  - notice: notice records of NOTICE_RECORD_BYTES, sealed in each phone's
 *    `notification` group, posted as `group=notification` — the relay pushes
 *    each one (cover or not) like any notice.
 *
 * constant-rate: every slot sends one record per phone per lane (a cover record
 * when nothing is queued). padding-buckets: at each slot, complete items and
 * pending notices leave in records padded to the configured sizes; an idle slot
 * sends nothing.
 *
 * Timing: a slot's records are built and sealed right after the previous slot
 * went out, then the sender waits for the slot's time and only posts, so how
 * long building or sealing takes never shows in when a request leaves.
 * Consumption is committed (segments removed from the queue) only once every
 * phone's copy was taken by the relay; a failed slot is rebuilt from the same
 * bytes at the next one (the phone drops bytes it already has).
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import { isAborted } from '../../base/async.js';
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import type { NoticeMessage } from '../../protocol/e2ee-frames.js';
import { encodeConfigMessage } from '../../protocol/e2ee-frames.js';
import {
  FRAGMENT_FIXED_BYTES,
  STREAM_HEADER_BYTES,
  encodeStreamRecord,
  type Fragment,
} from '../../protocol/stream-record.js';
import { NOTICE_RECORD_BYTES, planOf, type PrivacyConfig, type PrivacyPlan } from './privacy.js';
import type { Segment, UplinkQueue } from './queue.js';

/** MLS group and relay group of each lane. */
export const LANE_GROUP = { data: 'config', notice: 'notification' } as const;
export type Lane = keyof typeof LANE_GROUP;

/** What the sender needs of the MLS hub and the phone-id mapping. */
export interface StreamPeers {
  /** The phones records go to, with their relay account ids when known. */
  recipients(): readonly { readonly phoneId: string; readonly relayPhoneId?: string | undefined }[];
  /** Seal a record as one MLS application message in the phone's group for the lane. */
  seal(phoneId: string, group: 'config' | 'notification', record: Uint8Array): Promise<Uint8Array>;
}

/**
 * The uplink's `privacy` option for a hub (the production services and the local run):
 * empty with the mode off, else the plan and the peers its records are sealed for.
 */
export function privacyUplinkOption(
  privacy: PrivacyConfig | undefined,
  hub: {
    readonly phones: readonly { readonly phoneId: string }[];
    sealRecord(id: string, g: 'config' | 'notification', r: Uint8Array): Promise<Uint8Array>;
  },
  channel: () => { relayPhoneOf(phoneId: string): string | undefined } | undefined,
): { privacy?: { plan: PrivacyPlan; peers: StreamPeers } } {
  const plan = privacy === undefined ? undefined : planOf(privacy);
  if (plan === undefined) return {};
  return {
    privacy: {
      plan,
      peers: {
        recipients: () =>
          hub.phones.map((p) => ({
            phoneId: p.phoneId,
            relayPhoneId: channel()?.relayPhoneOf(p.phoneId),
          })),
        seal: (id, g, rec) => hub.sealRecord(id, g, rec),
      },
    },
  };
}

/** Post one sealed record to the relay (one `kind=message` item, one append). */
export type StreamPost = (
  itemId: string,
  group: 'config' | 'notification',
  bytes: Uint8Array,
  relayPhoneId: string | undefined,
  signal: AbortSignal,
) => Promise<void>;

export interface StreamStatus {
  readonly mode: PrivacyPlan['mode'];
  /** Slots that went out (every lane), and the records in them. */
  readonly slots: number;
  readonly records: number;
  /** Records with no fragment. */
  readonly coverRecords: number;
  readonly failedSlots: number;
  readonly pendingNotices: number;
}

/** One slot's work, built before its time. */
interface Built {
  readonly records: readonly Uint8Array[];
  /** Queue progress to commit once every copy is posted: seq -> bytes consumed. */
  readonly takes: ReadonlyMap<number, number>;
  readonly notices: number;
  readonly cover: number;
}

const EMPTY: Built = { records: [], takes: new Map(), notices: 0, cover: 0 };

/**
 * Fragments of queued segments that fit `capacity` bytes, strictly in queue order. Pure.
 * Never reorder: a clip's thumbnail is sealed in the clip's epoch, so a later item's
 * thumbnail sent before an earlier clip's header would move the phone past that
 * clip's epoch (the phone accepts headers in the order items first appear).
 */
export function planFragments(
  segments: readonly Segment[],
  consumed: ReadonlyMap<number, number>,
  capacity: number,
): { seg: Segment; from: number; to: number }[] {
  const order = [...segments].sort((a, b) => a.seq - b.seq);
  const out: { seg: Segment; from: number; to: number }[] = [];
  let room = capacity;
  for (const seg of order) {
    const from = consumed.get(seg.seq) ?? 0;
    if (consumed.has(seg.seq) && from >= seg.size) continue; // taken whole already
    const left = seg.size - from;
    const head = FRAGMENT_FIXED_BYTES + seg.itemId.length;
    if (room < head + Math.min(left, 1)) break;
    const n = Math.min(left, room - head);
    out.push({ seg, from, to: from + n });
    room -= head + n;
    if (n < left) break;
  }
  return out;
}

export interface StreamSenderOptions {
  readonly plan: PrivacyPlan;
  readonly queue: UplinkQueue;
  readonly peers: StreamPeers;
  readonly post: StreamPost;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** After each slot (tests and benches wait for these). */
  readonly onSlot?: (s: { lane: Lane; at: number; records: number; cover: number }) => void;
  /** After queue segments were removed (the uplink's drain waiters). */
  readonly onCommitted?: () => void;
}

export class StreamSender {
  readonly #o: StreamSenderOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** Bytes of partly sent segments (in memory: after a restart a segment is resent whole). */
  readonly #consumed = new Map<number, number>();
  readonly #notices: Uint8Array[] = [];
  #slots = 0;
  #records = 0;
  #cover = 0;
  #failed = 0;

  constructor(o: StreamSenderOptions) {
    this.#o = o;
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    this.#log = o.logger.child('privacy');
  }

  /** Queue a notice for the next notice slot. */
  queueNotice(n: Omit<NoticeMessage, 't'>): void {
    this.#notices.push(encodeConfigMessage({ t: 'notice', ...n }));
  }

  status(): StreamStatus {
    return {
      mode: this.#o.plan.mode,
      slots: this.#slots,
      records: this.#records,
      coverRecords: this.#cover,
      failedSlots: this.#failed,
      pendingNotices: this.#notices.length,
    };
  }

  /** Run both lanes until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const p = this.#o.plan;
    const lanes = [this.#lane('data', p.slotMs, signal)];
    if (p.scheduledNotices) lanes.push(this.#lane('notice', p.noticeSlotMs, signal));
    await Promise.all(lanes);
  }

  #sleepUntil(at: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      const t = this.#clock.setTimeout(done, Math.max(0, at - this.#clock.now()));
      function done(): void {
        t.cancel();
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done);
    });
  }

  async #lane(lane: Lane, slotMs: number, signal: AbortSignal): Promise<void> {
    const next = (after: number): number => (Math.floor(after / slotMs) + 1) * slotMs;
    let at = next(this.#clock.now());
    // constant-rate prepares a slot before its time (nothing about the content shows in
    // when it leaves); padding-buckets builds at the slot, so an item waits one slot at most
    const ahead = this.#o.plan.mode === 'constant-rate';
    while (!signal.aborted) {
      if (!ahead) await this.#sleepUntil(at, signal);
      let built: Built;
      let sealed: { itemId: string; bytes: Uint8Array; to: string | undefined }[];
      try {
        built = await this.#build(lane);
        sealed = await this.#seal(lane, built);
      } catch (e) {
        this.#log.error('privacy slot could not be prepared', { lane, err: reasonOf(e) });
        built = EMPTY;
        sealed = [];
      }
      if (ahead) await this.#sleepUntil(at, signal);
      if (isAborted(signal)) break;
      try {
        for (const s of sealed)
          await this.#o.post(s.itemId, LANE_GROUP[lane], s.bytes, s.to, signal);
        await this.#commit(lane, built);
      } catch (e) {
        if (isAborted(signal)) break;
        this.#failed += 1;
        this.#log.warn('privacy slot not delivered; its bytes go again at the next slot', {
          lane,
          err: reasonOf(e),
        });
      }
      if (sealed.length > 0) {
        this.#slots += 1;
        this.#records += sealed.length;
        this.#cover += built.cover * (sealed.length / Math.max(1, built.records.length));
      }
      this.#o.onSlot?.({ lane, at, records: sealed.length, cover: built.cover });
      // A slot missed (the sender was late, the relay slow) is skipped, never sent late.
      at = next(Math.max(at, this.#clock.now()));
    }
  }

  async #seal(
    lane: Lane,
    built: Built,
  ): Promise<{ itemId: string; bytes: Uint8Array; to: string | undefined }[]> {
    const out: { itemId: string; bytes: Uint8Array; to: string | undefined }[] = [];
    if (built.records.length === 0) return out;
    for (const r of this.#o.peers.recipients())
      for (const rec of built.records)
        out.push({
          itemId: `${lane === 'data' ? 'cfg' : 'ntf'}-${randomBytes(12).toString('base64url')}`,
          bytes: await this.#o.peers.seal(r.phoneId, LANE_GROUP[lane], rec),
          to: r.relayPhoneId,
        });
    return out;
  }

  async #commit(lane: Lane, built: Built): Promise<void> {
    if (lane === 'notice') {
      this.#notices.splice(0, built.notices);
      return;
    }
    const q = this.#o.queue;
    let removed = false;
    for (const [seq, to] of built.takes) {
      const seg = q.segment(seq);
      if (seg === undefined) continue;
      if (to >= seg.size) {
        await q.remove(seq);
        this.#consumed.delete(seq);
        removed = true;
      } else this.#consumed.set(seq, to);
    }
    if (removed) this.#o.onCommitted?.();
  }

  async #build(lane: Lane): Promise<Built> {
    const p = this.#o.plan;
    if (lane === 'notice') return this.#buildNotices(p.mode === 'constant-rate');
    if (p.mode === 'constant-rate') {
      const r = await this.#buildRecord(this.#o.queue.segments(), p.recordBytes, new Map());
      return { records: [r.record], takes: r.takes, notices: 0, cover: r.fragments === 0 ? 1 : 0 };
    }
    // padding-buckets: complete items only, in as many bucket-sized records as they need
    const complete = new Set(
      this.#o.queue
        .items()
        .filter((i) => i.complete)
        .map((i) => i.itemId),
    );
    const segs = this.#o.queue.segments().filter((s) => complete.has(s.itemId));
    const records: Uint8Array[] = [];
    const takes = new Map<number, number>();
    for (;;) {
      const left = segs
        .map((s) => {
          const from = takes.get(s.seq) ?? this.#consumed.get(s.seq);
          if (from !== undefined && from >= s.size) return 0;
          return FRAGMENT_FIXED_BYTES + s.itemId.length + s.size - (from ?? 0);
        })
        .reduce((a, b) => a + b, 0);
      if (left === 0) break;
      const need = STREAM_HEADER_BYTES + left;
      const size = p.bucketBytes.find((b) => b >= need) ?? p.recordBytes;
      const merged = new Map([...this.#consumed, ...takes]);
      const r = await this.#buildRecord(segs, size, merged);
      for (const [k, v] of r.takes) takes.set(k, v);
      records.push(r.record);
    }
    return { records, takes, notices: 0, cover: 0 };
  }

  #noticeFragments(capacity: number): Fragment[] {
    const out: Fragment[] = [];
    let room = capacity - STREAM_HEADER_BYTES;
    for (const n of this.#notices) {
      const id = `n${randomBytes(8).toString('hex')}`;
      const need = FRAGMENT_FIXED_BYTES + id.length + n.length;
      if (need > room) break;
      out.push({ kind: 'notice', id, offset: 0, final: true, bytes: n });
      room -= need;
    }
    return out;
  }

  #buildNotices(always: boolean): Built {
    const frags = this.#noticeFragments(NOTICE_RECORD_BYTES);
    if (frags.length === 0 && !always) return EMPTY;
    return {
      records: [encodeStreamRecord(frags, NOTICE_RECORD_BYTES)],
      takes: new Map(),
      notices: frags.length,
      cover: frags.length === 0 ? 1 : 0,
    };
  }

  async #buildRecord(
    segments: readonly Segment[],
    recordBytes: number,
    already: ReadonlyMap<number, number>,
  ): Promise<{ record: Uint8Array; takes: Map<number, number>; fragments: number }> {
    const consumed = new Map([...this.#consumed, ...already]);
    const plan = planFragments(segments, consumed, recordBytes - STREAM_HEADER_BYTES);
    const fragments: Fragment[] = [];
    const takes = new Map<number, number>();
    for (const t of plan) {
      const data = await this.#o.queue.read(t.seg.seq);
      fragments.push({
        kind: t.seg.kind,
        id: t.seg.itemId,
        offset: t.seg.offset + t.from,
        final: t.seg.final && t.to === t.seg.size,
        bytes: data.subarray(t.from, t.to),
      });
      takes.set(t.seg.seq, t.to);
    }
    return {
      record: encodeStreamRecord(fragments, recordBytes),
      takes,
      fragments: fragments.length,
    };
  }
}
