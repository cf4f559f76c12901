/** The viewer's events: clips with their thumbnails, from the local store. */
import type { StoredItem } from '../store.js';

export interface EventView {
  readonly seq: number;
  readonly itemId: string;
  readonly startedAt: number;
  readonly durationMs: number;
  readonly codec: string;
  readonly size: number;
  readonly thumbnail: number | null;
}

/** Clips newest first, each with the thumbnail recorded closest to its start (within 10 s). */
export function eventsOf(items: readonly StoredItem[]): EventView[] {
  const thumbs = items.filter((i) => i.summary.kind === 'thumbnail');
  return items
    .filter((i) => i.summary.kind === 'clip')
    .map((c) => {
      let best: StoredItem | undefined;
      for (const t of thumbs) {
        const d = Math.abs(t.summary.startedAt - c.summary.startedAt);
        if (d <= 10_000 && (!best || d < Math.abs(best.summary.startedAt - c.summary.startedAt)))
          best = t;
      }
      return {
        seq: c.seq,
        itemId: c.summary.itemId,
        startedAt: c.summary.startedAt,
        durationMs: c.durationMs,
        codec: c.summary.codec,
        size: c.size,
        thumbnail: best?.seq ?? null,
      };
    })
    .sort((a, b) => b.startedAt - a.startedAt || b.seq - a.seq);
}
