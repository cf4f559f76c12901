/**
 * Retention as the hub runs it (docs/storage.md, "Retention"):
 *
 *  - `RetainingSink` sits between the sealer and the uplink: each sealed clip or
 *    thumbnail is also kept in the volume as `clips/<itemId>.vgi` /
 *    `thumbnails/<itemId>.vgi` and recorded in the RetentionStore as
 *    undelivered; it becomes delivered when every phone acknowledged it
 *    (`markDelivered`, from the config channel's heartbeat acks).
 *  - Retention runs before each new item and on a schedule (`start`), with the
 *    policy made from the hub config (`policyFromConfig`), together with the
 *    upload backlog's bounds (the uplink's `enforceBacklog`).
 *
 * Live records pass straight through (nothing of a live view is kept).
 */
import { join } from 'node:path';
import type { AtomicFile, DurableFs } from '../../hw/os/fs.js';
import type { FsStats } from '../../hw/luks/block.js';
import type { Logger } from '../../base/logger.js';
import type { ItemKind } from '../../protocol/items.js';
import type { CiphertextSink } from '../items.js';
import { Mutex } from '../../base/async.js';
import type { VigilConfig } from '../config/config.js';
import {
  RetentionStore,
  type RetentionClass,
  type RetentionPolicy,
  type RetentionReport,
} from './retention.js';

const MIB = 1024 * 1024;
const DAY_MS = 86_400_000;
/** A local copy larger than this is not kept (the upload still carries the item). */
export const MAX_LOCAL_COPY_BYTES = 64 * MIB;

/** A local copy being written (`file` undefined: it is not kept). */
interface LocalCopy {
  readonly cls: RetentionClass;
  file: AtomicFile | undefined;
  bytes: number;
}

/** The RetentionStore policy of the hub config's `retention` block. */
export function policyFromConfig(r: VigilConfig['retention']): RetentionPolicy {
  return {
    classes: {
      clips: { maxAgeDays: r.clipsDays },
      thumbnails: { maxAgeDays: r.thumbnailsDays },
      pending: { maxAgeDays: r.pendingDays },
    },
    minFreeBytes: r.minFreeMiB * MIB,
    criticalFreeBytes: r.criticalFreeMiB * MIB,
  };
}

/** The uplink's backlog bounds of the same block. */
export function backlogFromConfig(r: VigilConfig['retention']): {
  maxBytes: number;
  maxAgeMs: number;
} {
  return { maxBytes: r.backlogMaxMiB * MIB, maxAgeMs: r.pendingDays * DAY_MS };
}

export interface HubRetentionDeps {
  /** The mounted data volume. */
  readonly root: string;
  readonly fs: DurableFs;
  readonly stats: () => Promise<FsStats>;
  readonly logger: Logger;
  readonly policy: RetentionPolicy;
  /** Milliseconds between scheduled runs. */
  readonly intervalMs: number;
  /** The uplink's backlog bounds, applied with every run. */
  readonly enforceBacklog?: () => Promise<unknown>;
  readonly now?: () => number;
}

const CLASS_OF: Partial<Record<ItemKind, RetentionClass>> = {
  clip: 'clips',
  thumbnail: 'thumbnails',
};

export class HubRetention {
  readonly store: RetentionStore;
  readonly #d: HubRetentionDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<RetentionReport> | undefined;
  #lastReport: RetentionReport | undefined;
  #runs = 0;
  /** One writer of the retention index at a time (runs, new copies, acknowledgements). */
  readonly #mutex = new Mutex();
  /** Items the backlog dropped (a local copy of one is not kept). */
  readonly #discarded = new Set<string>();

  private constructor(d: HubRetentionDeps) {
    this.#d = d;
    this.#log = d.logger.child('retention');
    this.#now = d.now ?? Date.now;
    this.store = new RetentionStore({
      root: d.root,
      fs: d.fs,
      stats: d.stats,
      logger: d.logger,
      now: this.#now,
    });
  }

  static async open(d: HubRetentionDeps): Promise<HubRetention> {
    const h = new HubRetention(d);
    for (const cls of ['clips', 'thumbnails'] as const) {
      await d.fs.ensureDir(join(d.root, cls));
      // copies a crash interrupted (written as their item was sealed, never committed)
      await d.fs.cleanTemp(join(d.root, cls));
    }
    await h.store.load();
    return h;
  }

  /** Run retention (and the backlog bounds) once; concurrent callers share one run. */
  run(): Promise<RetentionReport> {
    this.#running ??= (async () => {
      try {
        await this.#d.enforceBacklog?.();
        const r = await this.#mutex.run(() => this.store.enforce(this.#d.policy));
        this.#lastReport = r;
        this.#runs += 1;
        return r;
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /** Run now and every `intervalMs` until `stop`. */
  start(): void {
    if (this.#timer) return;
    const tick = (): void => {
      this.run().catch((e: unknown) => {
        this.#log.error('retention run failed', { err: e });
      });
    };
    tick();
    this.#timer = setInterval(tick, this.#d.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  /**
   * Every phone holds these items: their local copies may now age out. Marked together,
   * so the index logs them in one append (one fdatasync for a heartbeat's acks).
   */
  async markDelivered(itemIds: readonly string[]): Promise<void> {
    await this.#mutex.run(async () => {
      await Promise.all(itemIds.map((id) => this.store.markDelivered(id)));
    });
  }

  /**
   * The upload backlog dropped these items: they will never reach a phone, so their
   * local copies go too (and a copy still being written is not kept).
   */
  async discard(itemIds: readonly string[]): Promise<void> {
    await this.#mutex.run(async () => {
      for (const id of itemIds) if (!(await this.store.discard(id))) this.#discarded.add(id);
    });
  }

  status(): Record<string, unknown> {
    const items = this.store.items();
    return {
      runs: this.#runs,
      items: items.length,
      undelivered: items.filter((i) => !i.delivered).length,
      ...(this.#lastReport
        ? {
            lastFreeBytes: this.#lastReport.freeBytesAfter,
            lastDeleted: this.#lastReport.deleted.length,
          }
        : {}),
    };
  }

  /**
   * A sink that keeps local copies and runs retention before each new item. A copy is
   * written as the item is sealed (appended to a temp file, records as parts, no sync)
   * and made durable and indexed when its last record arrives, so the hub never holds
   * an item in memory; an item whose upload fails, that the backlog dropped or that
   * grows past MAX_LOCAL_COPY_BYTES is not kept.
   */
  sink(inner: CiphertextSink): CiphertextSink {
    const open = new Map<string, LocalCopy>();
    const copy = async (
      itemId: string,
      kind: ItemKind,
      parts: readonly Uint8Array[],
      final: boolean,
    ): Promise<void> => {
      const cls = CLASS_OF[kind];
      if (cls === undefined) return;
      let cur = open.get(itemId);
      if (cur === undefined) {
        // before each new item: make room first
        await this.run().catch((e: unknown) => {
          this.#log.error('retention before a new item failed', { err: e, itemId });
        });
        cur = { cls, file: await this.#startCopy(itemId, cls), bytes: 0 };
        open.set(itemId, cur);
      }
      for (const p of parts) cur.bytes += p.length;
      if (cur.file !== undefined && cur.bytes > MAX_LOCAL_COPY_BYTES) {
        this.#log.warn('item too large for a local copy; only the upload carries it', {
          itemId,
          bytes: cur.bytes,
        });
        await cur.file.discard();
        cur.file = undefined;
      }
      if (cur.file !== undefined)
        try {
          await cur.file.append(parts);
        } catch (e) {
          // the upload is what delivers: a failed local copy (a full disk) must not stop it
          this.#log.error('could not keep a local copy', { err: e, itemId });
          cur.file = undefined; // append removed its temp
        }
      if (final) {
        open.delete(itemId);
        await this.#keep(itemId, cur);
      }
    };
    /** The upload of an item failed: it will not be delivered, its copy is not kept. */
    const dropCopy = async (itemId: string): Promise<void> => {
      const cur = open.get(itemId);
      open.delete(itemId);
      await cur?.file?.discard();
    };
    return {
      append: async (itemId, kind, bytes, final) => {
        await copy(itemId, kind, [bytes], final);
        await inner.append(itemId, kind, bytes, final).catch(async (e: unknown) => {
          await dropCopy(itemId);
          throw e;
        });
      },
      appendParts: async (itemId, kind, records, final) => {
        await copy(itemId, kind, records.flat(), final);
        const done =
          inner.appendParts !== undefined
            ? inner.appendParts(itemId, kind, records, final)
            : (async () => {
                // a sink without parts: one append per record (the last one final)
                for (const [i, r] of records.entries())
                  await inner.append(
                    itemId,
                    kind,
                    Buffer.concat(r),
                    final && i === records.length - 1,
                  );
              })();
        await done.catch(async (e: unknown) => {
          await dropCopy(itemId);
          throw e;
        });
      },
    };
  }

  async #startCopy(itemId: string, cls: RetentionClass): Promise<AtomicFile | undefined> {
    try {
      return await this.#d.fs.createAtomic(join(this.#d.root, cls, `${itemId}.vgi`), 'local-copy');
    } catch (e) {
      this.#log.error('could not keep a local copy', { err: e, itemId });
      return undefined;
    }
  }

  async #keep(itemId: string, it: LocalCopy): Promise<void> {
    if (this.#discarded.delete(itemId)) {
      await it.file?.discard();
      return;
    }
    if (it.file === undefined) return;
    const rel = `${it.cls}/${itemId}.vgi`;
    try {
      await it.file.commit();
      await this.#mutex.run(() =>
        this.store.add({
          id: itemId,
          cls: it.cls,
          path: rel,
          bytes: it.bytes,
          createdAt: this.#now(),
          delivered: false,
        }),
      );
    } catch (e) {
      // the upload is what delivers: a failed local copy (a full disk) must not stop it
      this.#log.error('could not keep a local copy', { err: e, itemId });
    }
  }
}
