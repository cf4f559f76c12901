/**
 * The companion's local item store. The relay deletes an item once every phone
 * acknowledged it, so the companion keeps its own copy — still encrypted (the
 * container as received) — and decrypts on demand with the kept item key.
 *
 *   <dir>/items/<seq>.vgi    the container bytes
 *   <dir>/items/<seq>.json   {seq, relayItemId, group, summary, size, durationMs, storedAt}
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../hw/os/fs.js';
import { ITEM_KINDS } from '../protocol/items.js';
import { StreamReassembler } from './stream.js';

export const StoredItem = z.object({
  seq: z.number().int().positive(),
  relayItemId: z.string(),
  group: z.string(),
  summary: z.object({
    itemId: z.string(),
    kind: z.enum(ITEM_KINDS),
    deviceId: z.string(),
    startedAt: z.number(),
    codec: z.string(),
  }),
  size: z.number().int(),
  durationMs: z.number(),
  storedAt: z.number(),
});
export type StoredItem = z.infer<typeof StoredItem>;

export class ItemStore {
  readonly #dir: string;
  readonly #fs: DurableFs;

  constructor(dir: string, fs: DurableFs) {
    this.#dir = join(dir, 'items');
    this.#fs = fs;
  }

  /** The reassembler of privacy-mode stream records, in `<dir>/stream/` (app/stream.ts). */
  openStream(): Promise<StreamReassembler> {
    return StreamReassembler.open(join(this.#dir, '..', 'stream'), this.#fs);
  }

  async save(meta: StoredItem, bytes: Uint8Array): Promise<void> {
    // Bytes first, then the metadata: an item is listed only once its bytes are durable.
    await this.#fs.writeFileAtomic(join(this.#dir, `${meta.seq}.vgi`), bytes, 'app-item');
    await this.#fs.writeFileAtomic(
      join(this.#dir, `${meta.seq}.json`),
      JSON.stringify(StoredItem.parse(meta)),
      'app-item-meta',
    );
  }

  async has(seq: number): Promise<boolean> {
    return (await this.#fs.readIfExists(join(this.#dir, `${seq}.json`))) !== undefined;
  }

  async list(): Promise<StoredItem[]> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: StoredItem[] = [];
    for (const n of names) {
      if (!/^[0-9]+\.json$/.test(n)) continue;
      let text: string;
      try {
        text = await readFile(join(this.#dir, n), 'utf8');
      } catch (e) {
        // removed since readdir (the viewer deletes while another request lists)
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      const r = StoredItem.safeParse(JSON.parse(text));
      if (r.success) out.push(r.data);
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  async get(seq: number): Promise<{ meta: StoredItem; bytes: Buffer } | undefined> {
    const m = await this.#fs.readIfExists(join(this.#dir, `${seq}.json`));
    const b = await this.#fs.readIfExists(join(this.#dir, `${seq}.vgi`));
    if (!m || !b) return undefined;
    return { meta: StoredItem.parse(JSON.parse(m.toString('utf8'))), bytes: b };
  }

  async remove(seq: number): Promise<void> {
    await this.#fs.remove(join(this.#dir, `${seq}.json`), 'app-item-meta');
    await this.#fs.remove(join(this.#dir, `${seq}.vgi`), 'app-item');
  }
}
