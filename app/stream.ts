/**
 * The phone's half of the privacy modes (docs/app.md "Privacy modes"): the
 * media fragments of stream records (protocol/stream-record.ts) are kept
 * durably, per item, until the item's bytes are whole again; then the syncer
 * treats the container like one it had read from the relay.
 *
 *   <dir>/<itemId>/<offset, 12 digits>.frag   one file per fragment
 *
 * A fragment is written before its record is acknowledged on the relay, so a
 * crash loses nothing; bytes the phone already holds (a slot the hub sent
 * again) are ignored. A cover record brings no fragment and costs nothing here.
 */
import { readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DurableFs } from '../hw/os/fs.js';
import type { Fragment } from '../protocol/stream-record.js';

const FRAG_RE = /^([0-9]{12})\.frag$/;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** A 4-byte flag file beside the fragments: the final fragment's end offset. */
const END_FILE = 'end';

interface Part {
  readonly offset: number;
  readonly length: number;
}
interface Pending {
  readonly id: string;
  readonly parts: Part[];
  /** Total length once the final fragment arrived. */
  end: number | undefined;
}

/**
 * Seqs of items reassembled from stream records, in the store (app/store.ts):
 * apart from relay seqs, unique per record and item.
 */
export const STREAM_SEQ_BASE = 2 ** 44;

export class StreamReassembler {
  readonly #dir: string;
  readonly #fs: DurableFs;
  /** In first-seen order: headers are accepted in this order (epoch order). */
  readonly #items = new Map<string, Pending>();

  private constructor(dir: string, fs: DurableFs) {
    this.#dir = dir;
    this.#fs = fs;
  }

  static async open(dir: string, fs: DurableFs): Promise<StreamReassembler> {
    const r = new StreamReassembler(dir, fs);
    await fs.ensureDir(dir);
    const ids = (await readdir(dir)).filter((n) => ID_RE.test(n)).sort();
    for (const id of ids) {
      const p: Pending = { id, parts: [], end: undefined };
      await fs.cleanTemp(join(dir, id));
      for (const n of (await readdir(join(dir, id))).sort()) {
        const m = FRAG_RE.exec(n);
        if (m) {
          const len = (await readFile(join(dir, id, n))).length;
          p.parts.push({ offset: Number(m[1]), length: len });
        }
        if (n === END_FILE) p.end = Number((await readFile(join(dir, id, n), 'utf8')).trim());
      }
      r.#items.set(id, p);
    }
    return r;
  }

  /** Bytes held contiguously from offset 0. */
  static #contiguous(p: Pending): number {
    let end = 0;
    for (const part of [...p.parts].sort((a, b) => a.offset - b.offset)) {
      if (part.offset > end) break;
      end = Math.max(end, part.offset + part.length);
    }
    return end;
  }

  /** Keep a media fragment durably (bytes already held are skipped). */
  async add(f: Fragment): Promise<void> {
    if (f.kind === 'notice') return;
    let p = this.#items.get(f.id);
    if (p === undefined) {
      p = { id: f.id, parts: [], end: undefined };
      this.#items.set(f.id, p);
      await this.#fs.ensureDir(join(this.#dir, f.id));
    }
    const have = StreamReassembler.#contiguous(p);
    const start = Math.max(f.offset, have);
    const skip = start - f.offset;
    if (skip < f.bytes.length && !p.parts.some((x) => x.offset === start)) {
      const bytes = f.bytes.subarray(skip);
      await this.#fs.writeFileAtomic(
        join(this.#dir, f.id, `${String(start).padStart(12, '0')}.frag`),
        bytes,
        'app-stream-fragment',
      );
      p.parts.push({ offset: start, length: bytes.length });
    }
    if (f.final && p.end === undefined) {
      const end = f.offset + f.bytes.length;
      await this.#fs.writeFileAtomic(join(this.#dir, f.id, END_FILE), `${end}\n`, 'app-stream-end');
      p.end = end;
    }
  }

  /** Items with bytes held, in first-seen order. */
  pending(): string[] {
    return [...this.#items.keys()];
  }

  /** The item's contiguous bytes from offset 0 (for its header). */
  async prefix(id: string): Promise<Buffer> {
    const p = this.#items.get(id);
    if (p === undefined) return Buffer.alloc(0);
    return this.#read(p, StreamReassembler.#contiguous(p));
  }

  /** Every byte has arrived. */
  complete(id: string): boolean {
    const p = this.#items.get(id);
    return p?.end !== undefined && StreamReassembler.#contiguous(p) >= p.end;
  }

  /**
   * Bytes of the item will never all arrive: the hub sends an item's bytes in
   * order, one record after another, and the phone reads records in the relay's
   * order, so a hole before bytes already held (or before the final fragment)
   * was lost for good — a record deleted by the relay's age limit before this
   * phone read it, one this phone could not open, or sent before it joined.
   */
  broken(id: string): boolean {
    const p = this.#items.get(id);
    if (p === undefined) return false;
    const have = StreamReassembler.#contiguous(p);
    if (p.end !== undefined) return have < p.end;
    return p.parts.some((x) => x.offset > have);
  }

  async #read(p: Pending, upTo: number): Promise<Buffer> {
    const out = Buffer.alloc(upTo);
    for (const part of p.parts) {
      if (part.offset >= upTo) continue;
      const b = await readFile(
        join(this.#dir, p.id, `${String(part.offset).padStart(12, '0')}.frag`),
      );
      b.subarray(0, Math.min(b.length, upTo - part.offset)).copy(out, part.offset);
    }
    return out;
  }

  /** The whole item (call when `complete`). */
  async take(id: string): Promise<Buffer> {
    const p = this.#items.get(id);
    if (p?.end === undefined) throw new Error(`item ${id} is not complete`);
    return this.#read(p, p.end);
  }

  /** Forget an item (stored, or given up on) and delete its fragments. */
  async drop(id: string): Promise<void> {
    const p = this.#items.get(id);
    if (p === undefined) return;
    for (const part of p.parts)
      await this.#fs.remove(
        join(this.#dir, id, `${String(part.offset).padStart(12, '0')}.frag`),
        'app-stream-fragment',
      );
    await this.#fs.remove(join(this.#dir, id, END_FILE), 'app-stream-end');
    await rmdir(join(this.#dir, id)).catch(() => undefined); // empty by now; a leftover is harmless
    this.#items.delete(id);
  }
}
