/**
 * The hub's durable upload queue: one file per `CiphertextSink.append` call,
 * named by a global sequence number, written through DurableFs before
 * `append` resolves. The sender takes the oldest file first and removes it only
 * after the relay acknowledged those bytes, so a crash or an outage loses
 * nothing and the backlog drains in the order it was recorded.
 *
 * Segment file: u32 header length | JSON header {itemId, kind, offset, final} | bytes.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../../hw/os/fs.js';
import { VigilError } from '../../base/errors.js';

export const SegmentHeader = z.strictObject({
  itemId: z.string().min(1).max(64),
  kind: z.enum(['clip', 'thumbnail']),
  offset: z.number().int().min(0),
  final: z.boolean(),
  /** When the segment was queued (ms since the epoch); absent in segments of older hubs. */
  at: z.number().int().min(0).optional(),
});
export type SegmentHeader = z.infer<typeof SegmentHeader>;

export interface Segment extends SegmentHeader {
  readonly seq: number;
  readonly size: number;
}

/** One item waiting in the queue (what the backlog cap decides on). */
export interface QueuedItem {
  readonly itemId: string;
  readonly kind: 'clip' | 'thumbnail';
  /** Offset of its oldest queued segment: 0 means the relay has none of it yet. */
  readonly firstOffset: number;
  /** Sequence number of its oldest queued segment (queue order). */
  readonly firstSeq: number;
  /** When its oldest queued segment was queued (undefined: an older hub's segment). */
  readonly queuedAt: number | undefined;
  readonly bytes: number;
  /** The item's last segment is queued: no writer will add to it. */
  readonly complete: boolean;
}

const NAME_RE = /^([0-9]{12})\.seg$/;

export class UplinkQueue {
  readonly #dir: string;
  readonly #fs: DurableFs;
  /** seq -> header (bytes stay on disk until sent). */
  readonly #index = new Map<number, Segment>();
  /** Next byte offset per unfinished item. */
  readonly #offsets = new Map<string, number>();
  #nextSeq = 1;
  #bytes = 0;

  private constructor(dir: string, fs: DurableFs) {
    this.#dir = dir;
    this.#fs = fs;
  }

  static async open(dir: string, fs: DurableFs): Promise<UplinkQueue> {
    const q = new UplinkQueue(dir, fs);
    await fs.ensureDir(dir);
    await fs.cleanTemp(dir);
    const names = (await readdir(dir)).filter((n) => NAME_RE.test(n)).sort();
    for (const name of names) {
      const seq = Number(NAME_RE.exec(name)?.[1]);
      const raw = await readFile(join(dir, name));
      const seg = UplinkQueue.#decode(seq, raw);
      if (!seg) {
        // An empty file is what a power cut can leave of an unsynced write that was
        // never acknowledged to the caller: drop it.
        await fs.remove(join(dir, name), 'uplink-segment');
        continue;
      }
      q.#index.set(seq, seg.seg);
      q.#bytes += seg.seg.size;
      q.#nextSeq = Math.max(q.#nextSeq, seq + 1);
      if (seg.seg.final) q.#offsets.delete(seg.seg.itemId);
      else q.#offsets.set(seg.seg.itemId, seg.seg.offset + seg.seg.size);
    }
    return q;
  }

  static #decode(seq: number, raw: Buffer): { seg: Segment; data: Buffer } | undefined {
    if (raw.length < 4) return undefined;
    const hl = raw.readUInt32BE(0);
    if (4 + hl > raw.length) return undefined;
    let h: SegmentHeader;
    try {
      h = SegmentHeader.parse(JSON.parse(raw.subarray(4, 4 + hl).toString('utf8')));
    } catch {
      return undefined;
    }
    const data = raw.subarray(4 + hl);
    return { seg: { ...h, seq, size: data.length }, data };
  }

  #path(seq: number): string {
    return join(this.#dir, `${String(seq).padStart(12, '0')}.seg`);
  }

  /** Durably enqueue the next bytes of an item. */
  async push(
    itemId: string,
    kind: 'clip' | 'thumbnail',
    bytes: Uint8Array,
    final: boolean,
    at?: number,
  ): Promise<Segment> {
    const offset = this.#offsets.get(itemId) ?? 0;
    const h: SegmentHeader = { itemId, kind, offset, final, ...(at === undefined ? {} : { at }) };
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.length);
    const seq = this.#nextSeq++;
    await this.#fs.writeFileAtomic(
      this.#path(seq),
      Buffer.concat([len, json, bytes]),
      'uplink-segment',
    );
    const seg: Segment = { ...h, seq, size: bytes.length };
    this.#index.set(seq, seg);
    this.#bytes += bytes.length;
    if (final) this.#offsets.delete(itemId);
    else this.#offsets.set(itemId, offset + bytes.length);
    return seg;
  }

  /** The oldest segment and its bytes. */
  async peek(): Promise<{ seg: Segment; data: Buffer } | undefined> {
    const first = this.#index.keys().next();
    if (first.done) return undefined;
    const seq = first.value;
    const raw = await readFile(this.#path(seq));
    const d = UplinkQueue.#decode(seq, raw);
    if (!d) throw new VigilError('ECORRUPT', `uplink segment ${seq} is unreadable`);
    return d;
  }

  /** Every queued segment, oldest first. */
  segments(): Segment[] {
    return [...this.#index.values()];
  }

  segment(seq: number): Segment | undefined {
    return this.#index.get(seq);
  }

  /** The bytes of one queued segment. */
  async read(seq: number): Promise<Buffer> {
    const d = UplinkQueue.#decode(seq, await readFile(this.#path(seq)));
    if (!d) throw new VigilError('ECORRUPT', `uplink segment ${seq} is unreadable`);
    return d.data;
  }

  /** Remove a sent segment. */
  async remove(seq: number): Promise<void> {
    const seg = this.#index.get(seq);
    if (!seg) return;
    await this.#fs.remove(this.#path(seq), 'uplink-segment');
    this.#index.delete(seq);
    this.#bytes -= seg.size;
  }

  /** Drop every queued segment of an item (it cannot be delivered). */
  async dropItem(itemId: string): Promise<number> {
    let n = 0;
    for (const seg of [...this.#index.values()]) {
      if (seg.itemId !== itemId) continue;
      await this.remove(seg.seq);
      n++;
    }
    this.#offsets.delete(itemId);
    return n;
  }

  /** The queued items, oldest first (by their oldest queued segment). */
  items(): QueuedItem[] {
    const out = new Map<string, QueuedItem>();
    for (const seg of this.#index.values()) {
      const it = out.get(seg.itemId);
      if (it === undefined)
        out.set(seg.itemId, {
          itemId: seg.itemId,
          kind: seg.kind,
          firstOffset: seg.offset,
          firstSeq: seg.seq,
          queuedAt: seg.at,
          bytes: seg.size,
          complete: seg.final,
        });
      else out.set(seg.itemId, { ...it, bytes: it.bytes + seg.size, complete: seg.final });
    }
    return [...out.values()];
  }

  get length(): number {
    return this.#index.size;
  }
  get bytes(): number {
    return this.#bytes;
  }
  oldest(): Segment | undefined {
    const first = this.#index.values().next();
    return first.done ? undefined : first.value;
  }
}
