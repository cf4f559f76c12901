/**
 * Test helper: an in-memory ItemSealer at the lowest port. It keeps each
 * item's plaintext (so tests can ffprobe it) and records the order of calls.
 * The integration test uses the real sealer instead.
 */
import type { ItemMeta, ItemSealer, SealedItemWriter } from '../../../firmware/items.js';

export interface MemoryItem {
  readonly itemId: string;
  readonly meta: ItemMeta;
  readonly chunks: Uint8Array[];
  readonly writeTimes: number[];
  state: 'open' | 'closed' | 'aborted';
  durationMs?: number;
  /** The sealed end-record note given to `close`. */
  note?: string;
  abortReason?: string;
}

export class MemorySealer implements ItemSealer {
  readonly items: MemoryItem[] = [];
  #n = 0;
  /** Make the next write of an item kind fail (to test error paths). */
  failWritesOf: ItemMeta['kind'] | undefined;

  begin(meta: ItemMeta): Promise<SealedItemWriter> {
    const itemId = `item-${String(++this.#n).padStart(4, '0')}`;
    const item: MemoryItem = { itemId, meta, chunks: [], writeTimes: [], state: 'open' };
    this.items.push(item);
    const epoch = BigInt(this.#n);
    return Promise.resolve({
      itemId,
      epoch,
      write: (plain: Uint8Array) => {
        if (item.state !== 'open') return Promise.reject(new Error(`write after ${item.state}`));
        if (this.failWritesOf === meta.kind)
          return Promise.reject(new Error('injected write failure'));
        item.chunks.push(new Uint8Array(plain));
        item.writeTimes.push(Date.now());
        return Promise.resolve();
      },
      close: (durationMs: number, note?: string) => {
        if (item.state !== 'open') return Promise.reject(new Error(`close after ${item.state}`));
        item.state = 'closed';
        item.durationMs = durationMs;
        if (note !== undefined) item.note = note;
        return Promise.resolve();
      },
      abort: (reason: string) => {
        if (item.state === 'open') {
          item.state = 'aborted';
          item.abortReason = reason;
        }
        return Promise.resolve();
      },
    });
  }

  of(kind: ItemMeta['kind']): MemoryItem[] {
    return this.items.filter((i) => i.meta.kind === kind);
  }

  static bytes(item: MemoryItem): Buffer {
    return Buffer.concat(item.chunks);
  }
}
