/**
 * Retention for the data volume: clips, thumbnails and pending uploads, each
 * with limits in days and bytes, plus disk-pressure deletion.
 *
 * Rules, in order:
 *  1. Per class: delivered items older than `maxAgeDays` go; then delivered
 *     items, oldest first, until the class fits `maxBytes`.
 *  2. Disk pressure (free < `minFreeBytes`): delivered items of any class,
 *     oldest first, until free >= `minFreeBytes`.
 *  3. Critical (free < `criticalFreeBytes` even after 2): undelivered items,
 *     oldest first, until free >= `criticalFreeBytes` — each one reported
 *     (returned in `undeliveredDeleted` and logged as an error), because the
 *     owner will never see it.
 * Undelivered items are never deleted by age or class size alone.
 *
 * The index (`.retention-index.json` at the tree's root) is written through
 * DurableFs. Files are deleted first and the index rewritten after, so a crash
 * in between only leaves index entries whose files are gone; `load()`
 * reconciles the index with the tree (missing files dropped, unknown files
 * adopted as undelivered — never lose what we cannot account for).
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../../hw/os/fs.js';
import type { FsStats } from '../../hw/luks/block.js';
import type { Logger } from '../../base/logger.js';
import { ValidationError } from '../../base/errors.js';

export const RETENTION_CLASSES = ['clips', 'thumbnails', 'pending'] as const;
export type RetentionClass = (typeof RETENTION_CLASSES)[number];

const DAY_MS = 86_400_000;
export const INDEX_FILE = '.retention-index.json';

const ClassPolicySchema = z.object({
  maxAgeDays: z.number().positive().optional(),
  maxBytes: z.number().int().nonnegative().optional(),
});

export const RetentionPolicySchema = z
  .object({
    classes: z.object({
      clips: ClassPolicySchema,
      thumbnails: ClassPolicySchema,
      pending: ClassPolicySchema,
    }),
    minFreeBytes: z.number().int().nonnegative(),
    criticalFreeBytes: z.number().int().nonnegative(),
  })
  .refine((p) => p.criticalFreeBytes <= p.minFreeBytes, {
    message: 'criticalFreeBytes must not exceed minFreeBytes',
  });
export type RetentionPolicy = z.infer<typeof RetentionPolicySchema>;

export const DEFAULT_RETENTION_POLICY: RetentionPolicy = {
  classes: {
    clips: { maxAgeDays: 30 },
    thumbnails: { maxAgeDays: 30 },
    pending: { maxAgeDays: 7 },
  },
  minFreeBytes: 512 * 1024 * 1024,
  criticalFreeBytes: 64 * 1024 * 1024,
};

const ItemSchema = z.object({
  id: z.string().min(1),
  cls: z.enum(RETENTION_CLASSES),
  /** Relative to the tree root, inside `<cls>/`. */
  path: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  createdAt: z.number(),
  delivered: z.boolean(),
});
export type RetainedItem = z.infer<typeof ItemSchema>;

const IndexSchema = z.object({
  format: z.literal('vigil-retention-index'),
  version: z.literal(1),
  items: z.array(ItemSchema),
});

export interface DeletedItem {
  readonly id: string;
  readonly cls: RetentionClass;
  readonly bytes: number;
  readonly delivered: boolean;
  readonly why: 'age' | 'class-bytes' | 'disk-pressure' | 'critical';
}

export interface RetentionReport {
  readonly deleted: readonly DeletedItem[];
  /** Undelivered items deleted because space was critical: the owner never got them. */
  readonly undeliveredDeleted: readonly DeletedItem[];
  readonly bytesFreed: number;
  readonly freeBytesBefore: number;
  readonly freeBytesAfter: number;
  /** Still below the critical threshold after deleting everything allowed. */
  readonly stillCritical: boolean;
}

export interface RetentionDeps {
  /** The tree root (normally the mounted data volume). Items live in <root>/<class>/... */
  readonly root: string;
  readonly fs: DurableFs;
  readonly stats: () => Promise<FsStats>;
  readonly logger: Logger;
  readonly now?: () => number;
}

export class RetentionStore {
  readonly #d: RetentionDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  #items = new Map<string, RetainedItem>();
  #reconciled = false;

  constructor(deps: RetentionDeps) {
    this.#d = deps;
    this.#log = deps.logger.child('retention');
    this.#now = deps.now ?? Date.now;
  }

  get indexPath(): string {
    return join(this.#d.root, INDEX_FILE);
  }

  items(): RetainedItem[] {
    return [...this.#items.values()];
  }

  /** Read the index and reconcile it with the files present. */
  async load(): Promise<void> {
    this.#items.clear();
    const b = await this.#d.fs.readIfExists(this.indexPath);
    if (b !== undefined) {
      const r = IndexSchema.safeParse(safeJson(b.toString('utf8')));
      if (r.success) for (const it of r.data.items) this.#items.set(it.id, it);
      else
        this.#log.error('retention index unreadable; rebuilding from the tree', {
          path: this.indexPath,
        });
    }
    let changed = b === undefined;
    const seen = new Set<string>();
    for (const cls of RETENTION_CLASSES) {
      for (const file of await walk(join(this.#d.root, cls))) {
        const rel = relative(this.#d.root, file).split(sep).join('/');
        seen.add(rel);
        if ([...this.#items.values()].some((i) => i.path === rel)) continue;
        const st = await stat(file);
        // Unknown file: adopt it as undelivered so it is never silently dropped.
        this.#items.set(`adopted:${rel}`, {
          id: `adopted:${rel}`,
          cls,
          path: rel,
          bytes: st.size,
          createdAt: st.mtimeMs,
          delivered: false,
        });
        changed = true;
      }
    }
    for (const [id, it] of this.#items)
      if (!seen.has(it.path)) {
        this.#items.delete(id);
        changed = true;
      }
    // Not saved here: reconciling is repeatable, and a full disk (the case retention exists for)
    // must not stop the enforce() that frees space. The next add/markDelivered/enforce saves it.
    this.#reconciled = changed;
  }

  /** True when the last load() found the index out of step with the tree. */
  get reconciled(): boolean {
    return this.#reconciled;
  }

  async #save(): Promise<void> {
    const items = [...this.#items.values()].sort((a, b) => a.createdAt - b.createdAt);
    await this.#d.fs.writeFileAtomic(
      this.indexPath,
      JSON.stringify({ format: 'vigil-retention-index', version: 1, items }) + '\n',
      'retention-index',
    );
  }

  /** Record an item whose file already exists under <root>/<cls>/. */
  async add(item: RetainedItem): Promise<void> {
    const r = ItemSchema.safeParse(item);
    if (!r.success) throw new ValidationError(`invalid retention item: ${r.error.message}`);
    if (!item.path.startsWith(`${item.cls}/`) || item.path.split('/').includes('..'))
      throw new ValidationError(`item path ${item.path} must live under ${item.cls}/`);
    this.#items.set(item.id, r.data);
    await this.#save();
  }

  async markDelivered(id: string): Promise<boolean> {
    const it = this.#items.get(id);
    if (it === undefined || it.delivered) return false;
    this.#items.set(id, { ...it, delivered: true });
    await this.#save();
    return true;
  }

  /**
   * Remove an item that can no longer be delivered (the upload backlog dropped it:
   * firmware/uplink/backlog.ts). File first, index after, as in `enforce`.
   */
  async discard(id: string): Promise<boolean> {
    const it = this.#items.get(id);
    if (it === undefined) return false;
    await this.#d.fs.remove(join(this.#d.root, it.path), `retention-${it.cls}`);
    this.#items.delete(id);
    await this.#save();
    return true;
  }

  /** Apply the policy once. */
  async enforce(policyIn: RetentionPolicy): Promise<RetentionReport> {
    const policy = RetentionPolicySchema.parse(policyIn);
    const now = this.#now();
    const before = await this.#d.stats();
    let free = before.freeBytes;
    const deleted: DeletedItem[] = [];
    // Ties broken by id as code units (hex item ids, `adopted:<path>`): localeCompare would
    // run ICU collation, whose data alone adds ~2.7 MiB of resident pages (issue #19, memory).
    const oldestFirst = (xs: RetainedItem[]): RetainedItem[] =>
      [...xs].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const drop = async (it: RetainedItem, why: DeletedItem['why']): Promise<void> => {
      await this.#d.fs.remove(join(this.#d.root, it.path), `retention-${it.cls}`);
      this.#items.delete(it.id);
      free += it.bytes;
      deleted.push({ id: it.id, cls: it.cls, bytes: it.bytes, delivered: it.delivered, why });
    };

    for (const cls of RETENTION_CLASSES) {
      const p = policy.classes[cls];
      const mine = (): RetainedItem[] => oldestFirst(this.items().filter((i) => i.cls === cls));
      if (p.maxAgeDays !== undefined) {
        const cutoff = now - p.maxAgeDays * DAY_MS;
        for (const it of mine()) if (it.delivered && it.createdAt < cutoff) await drop(it, 'age');
      }
      if (p.maxBytes !== undefined) {
        let total = mine().reduce((s, i) => s + i.bytes, 0);
        for (const it of mine()) {
          if (total <= p.maxBytes) break;
          if (!it.delivered) continue;
          await drop(it, 'class-bytes');
          total -= it.bytes;
        }
      }
    }
    if (free < policy.minFreeBytes) {
      for (const it of oldestFirst(this.items().filter((i) => i.delivered))) {
        if (free >= policy.minFreeBytes) break;
        await drop(it, 'disk-pressure');
      }
    }
    const undeliveredDeleted: DeletedItem[] = [];
    if (free < policy.criticalFreeBytes) {
      for (const it of oldestFirst(this.items().filter((i) => !i.delivered))) {
        if (free >= policy.criticalFreeBytes) break;
        await drop(it, 'critical');
        const d = deleted.at(-1);
        if (d) undeliveredDeleted.push(d);
      }
    }
    if (deleted.length > 0 || this.#reconciled) await this.#save();
    this.#reconciled = false;
    const after = deleted.length > 0 ? await this.#d.stats() : before;
    const bytesFreed = deleted.reduce((s, d) => s + d.bytes, 0);
    if (undeliveredDeleted.length > 0)
      this.#log.error('disk space critical: deleted items that were never delivered', {
        count: undeliveredDeleted.length,
        ids: undeliveredDeleted.map((d) => d.id),
        bytes: undeliveredDeleted.reduce((s, d) => s + d.bytes, 0),
      });
    else if (deleted.length > 0)
      this.#log.info('retention freed space', { count: deleted.length, bytesFreed });
    return {
      deleted,
      undeliveredDeleted,
      bytesFreed,
      freeBytesBefore: before.freeBytes,
      freeBytesAfter: after.freeBytes,
      stillCritical: Math.max(free, after.freeBytes) < policy.criticalFreeBytes,
    };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function walk(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile() && !(e.name.startsWith('.') && e.name.endsWith('.tmp'))) out.push(p);
  }
  return out;
}
