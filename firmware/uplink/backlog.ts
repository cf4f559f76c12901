/**
 * The upload backlog's bounds (docs/storage.md, "Retention"): while the relay
 * is away the durable queue grows; past `maxBytes`, or for items queued longer
 * than `maxAgeMs`, whole items are dropped so the hub keeps recording.
 *
 * Rules (a pure plan; the uplink carries it out and reports the drops):
 *  - only complete items (their last segment is queued) that the relay has none
 *    of (oldest queued offset 0) and that are not being sent right now: an item
 *    is never cut in half, neither on the hub nor on the relay;
 *  - by age: every such item queued before `now - maxAgeMs`;
 *  - by size: clips oldest first, then thumbnails oldest first, until the queue
 *    plus the bytes about to be queued fits `maxBytes`. If nothing more may go,
 *    the queue stays over the cap (the newest item is never refused: it is the
 *    one the owner is most likely to want).
 */
import type { QueuedItem } from './queue.js';

export interface BacklogLimits {
  readonly maxBytes: number;
  /** Undefined: no age limit. */
  readonly maxAgeMs?: number;
}

export interface BacklogDrop {
  readonly itemId: string;
  readonly kind: 'clip' | 'thumbnail';
  readonly bytes: number;
  readonly why: 'backlog-bytes' | 'backlog-age';
}

export function planBacklogDrops(
  items: readonly QueuedItem[],
  limits: BacklogLimits,
  opts: {
    readonly now: number;
    readonly incomingBytes?: number;
    readonly busy?: ReadonlySet<string>;
  },
): BacklogDrop[] {
  const droppable = items
    .filter((i) => i.complete && i.firstOffset === 0 && !(opts.busy?.has(i.itemId) ?? false))
    .sort((a, b) => a.firstSeq - b.firstSeq);
  const out: BacklogDrop[] = [];
  const gone = new Set<string>();
  let total = items.reduce((s, i) => s + i.bytes, 0) + (opts.incomingBytes ?? 0);
  const drop = (i: QueuedItem, why: BacklogDrop['why']): void => {
    gone.add(i.itemId);
    total -= i.bytes;
    out.push({ itemId: i.itemId, kind: i.kind, bytes: i.bytes, why });
  };
  if (limits.maxAgeMs !== undefined) {
    const cutoff = opts.now - limits.maxAgeMs;
    for (const i of droppable)
      if (i.queuedAt !== undefined && i.queuedAt < cutoff) drop(i, 'backlog-age');
  }
  for (const kind of ['clip', 'thumbnail'] as const)
    for (const i of droppable) {
      if (total <= limits.maxBytes) return out;
      if (i.kind !== kind || gone.has(i.itemId)) continue;
      drop(i, 'backlog-bytes');
    }
  return out;
}
