/**
 * The hub's durable upload queue: one file per `CiphertextSink.append` call
 * (per `appendParts` call: a GOP's records, split at record boundaries into
 * files of at most MAX_SEGMENT_BYTES), named by a global sequence number,
 * written through DurableFs (one vectored write, one fsync of the file and one
 * of the directory) before the append resolves. The sender takes the oldest file first and removes it only
 * after the relay acknowledged those bytes, so a crash or an outage loses
 * nothing and the backlog drains in the order it was recorded.
 *
 * Segment file: u32 header length | JSON header {itemId, kind, offset, final} | bytes.
 * Headers are validated (zod) once, when the queue is opened; reads afterwards
 * trust the in-memory index and only check the file's framing and length.
 */
import { open as openFile, readdir, readFile } from 'node:fs/promises';
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

/**
 * Largest segment file `pushParts` writes (unless one part alone is larger): a GOP of
 * 1080p at 4 Mbit/s (~0.5 MB) is one file; the relay takes appends up to 4 MiB.
 */
export const MAX_SEGMENT_BYTES = 1024 * 1024;

/** A header longer than this is not one of ours (the JSON is ~120 bytes). */
const MAX_HEADER_BYTES = 4096;

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
      const seg = await UplinkQueue.#readHeader(seq, join(dir, name));
      if (!seg) {
        // An empty file is what a power cut can leave of an unsynced write that was
        // never acknowledged to the caller: drop it.
        await fs.remove(join(dir, name), 'uplink-segment');
        continue;
      }
      q.#index.set(seq, seg);
      q.#bytes += seg.size;
      q.#nextSeq = Math.max(q.#nextSeq, seq + 1);
      if (seg.final) q.#offsets.delete(seg.itemId);
      else q.#offsets.set(seg.itemId, seg.offset + seg.size);
    }
    return q;
  }

  /** A segment file's header (validated) and size, without reading its bytes. */
  static async #readHeader(seq: number, path: string): Promise<Segment | undefined> {
    const fh = await openFile(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size < 4) return undefined;
      const head = Buffer.alloc(Math.min(size, 4 + MAX_HEADER_BYTES));
      await fh.read(head, 0, head.length, 0);
      const hl = head.readUInt32BE(0);
      if (hl > MAX_HEADER_BYTES || 4 + hl > size) return undefined;
      let h: SegmentHeader;
      try {
        h = SegmentHeader.parse(JSON.parse(head.subarray(4, 4 + hl).toString('utf8')));
      } catch {
        return undefined;
      }
      return { ...h, seq, size: size - 4 - hl };
    } finally {
      await fh.close();
    }
  }

  /** The bytes of an indexed segment: the file's framing and length must match the index. */
  async #readData(seg: Segment): Promise<Buffer> {
    const raw = await readFile(this.#path(seg.seq));
    const hl = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
    if (hl < 0 || 4 + hl > raw.length || raw.length - 4 - hl !== seg.size)
      throw new VigilError('ECORRUPT', `uplink segment ${seg.seq} is unreadable`);
    return raw.subarray(4 + hl);
  }

  #path(seq: number): string {
    return join(this.#dir, `${String(seq).padStart(12, '0')}.seg`);
  }

  /** Durably enqueue the next bytes of an item. */
  push(
    itemId: string,
    kind: 'clip' | 'thumbnail',
    bytes: Uint8Array,
    final: boolean,
    at?: number,
  ): Promise<Segment> {
    return this.#write(itemId, kind, [bytes], bytes.length, final, at);
  }

  /**
   * Durably enqueue the next bytes of an item given as records (each as its parts),
   * without joining them: one segment file per MAX_SEGMENT_BYTES, split between
   * records (a record larger than that is a file of its own). Every file is on disk
   * when this resolves; a crash before that may leave the first files (each complete,
   * at the right offset, not final) and a later append continues after them. Returns
   * the segments written, in order.
   */
  async pushParts(
    itemId: string,
    kind: 'clip' | 'thumbnail',
    records: readonly (readonly Uint8Array[])[],
    final: boolean,
    at?: number,
  ): Promise<Segment[]> {
    const sizes = records.map((r) => r.reduce((n, p) => n + p.length, 0));
    const out: Segment[] = [];
    let batch: Uint8Array[] = [];
    let size = 0;
    for (const [i, r] of records.entries()) {
      batch.push(...r);
      size += sizes[i] ?? 0;
      const next = sizes[i + 1];
      if (next !== undefined && size + next <= MAX_SEGMENT_BYTES) continue;
      out.push(await this.#write(itemId, kind, batch, size, final && next === undefined, at));
      batch = [];
      size = 0;
    }
    if (out.length === 0 && final) out.push(await this.#write(itemId, kind, [], 0, true, at));
    return out;
  }

  async #write(
    itemId: string,
    kind: 'clip' | 'thumbnail',
    parts: readonly Uint8Array[],
    size: number,
    final: boolean,
    at: number | undefined,
  ): Promise<Segment> {
    const offset = this.#offsets.get(itemId) ?? 0;
    const h: SegmentHeader = { itemId, kind, offset, final, ...(at === undefined ? {} : { at }) };
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.length);
    const seq = this.#nextSeq++;
    await this.#fs.writeFileAtomic(this.#path(seq), [len, json, ...parts], 'uplink-segment');
    const seg: Segment = { ...h, seq, size };
    this.#index.set(seq, seg);
    this.#bytes += size;
    if (final) this.#offsets.delete(itemId);
    else this.#offsets.set(itemId, offset + size);
    return seg;
  }

  /** The oldest segment and its bytes. */
  async peek(): Promise<{ seg: Segment; data: Buffer } | undefined> {
    const first = this.#index.values().next();
    if (first.done) return undefined;
    const seg = first.value;
    return { seg, data: await this.#readData(seg) };
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
    const seg = this.#index.get(seq);
    if (seg === undefined) throw new VigilError('ENOENT', `uplink segment ${seq} is not queued`);
    return this.#readData(seg);
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
