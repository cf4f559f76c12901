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
 * The index is a snapshot plus a log of changes, both at the tree's root and
 * written through DurableFs (docs/decisions.md, "The retention index: a
 * snapshot and a log"):
 *  - `.retention-index.json`, the snapshot: the v1 index format (every item)
 *    with a random `generation`; replaced atomically, written in pieces;
 *  - `.retention-index.log`, the log: a header line naming the snapshot's
 *    generation, then one line per change (add, delivered, remove), each with
 *    its CRC-32, appended and fdatasynced before the change's call returns.
 * The log is replayed only over the snapshot of its own generation, and each
 * record sets state (replaying one twice changes nothing). Compaction (a new
 * snapshot, then a fresh log under its new generation) runs once the log
 * outgrows the snapshot (and COMPACT_MIN_LOG_BYTES). A crash between its two
 * writes leaves a log of the previous generation, ignored: the new snapshot
 * holds its records. A torn or corrupt record (a power cut mid-append) is
 * skipped with a warning and the next change compacts instead of appending
 * after it. A v1 index (no generation) loads as a snapshot without a log.
 *
 * Files are deleted first and the change logged after, so a crash in between
 * only leaves index entries whose files are gone; `load()` reconciles the index
 * with the tree (missing files dropped, unknown files adopted as undelivered —
 * never lose what we cannot account for) and stays the final authority.
 */
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { SimulatedCrash } from '../../hw/os/fs.js';
import type { DurableFs } from '../../hw/os/fs.js';
import type { FsStats } from '../../hw/luks/block.js';
import type { Logger } from '../../base/logger.js';
import { ValidationError } from '../../base/errors.js';

export const RETENTION_CLASSES = ['clips', 'thumbnails', 'pending'] as const;
export type RetentionClass = (typeof RETENTION_CLASSES)[number];

const DAY_MS = 86_400_000;
export const INDEX_FILE = '.retention-index.json';
export const LOG_FILE = '.retention-index.log';
/** The log is compacted once it is larger than the snapshot and than this. */
export const COMPACT_MIN_LOG_BYTES = 64 * 1024;
/** Items per piece of a snapshot being written (what the writer holds at once). */
const SNAPSHOT_CHUNK_ITEMS = 256;

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

const Generation = z.string().regex(/^[0-9a-f]{16}$/);

/** The snapshot: format v1 (what hubs before the log wrote) plus the generation its log continues. */
const IndexSchema = z.object({
  format: z.literal('vigil-retention-index'),
  version: z.literal(1),
  generation: Generation.optional(),
  items: z.array(ItemSchema),
});

const LogHeaderSchema = z.strictObject({
  format: z.literal('vigil-retention-log'),
  version: z.literal(1),
  generation: Generation,
});

const LogRecordSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('add'), item: ItemSchema }),
  z.strictObject({ op: z.literal('delivered'), id: z.string().min(1) }),
  z.strictObject({ op: z.literal('remove'), id: z.string().min(1) }),
]);
type LogRecord = z.infer<typeof LogRecordSchema>;

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
  /** Overrides COMPACT_MIN_LOG_BYTES (tests). */
  readonly compactMinLogBytes?: number;
}

export class RetentionStore {
  readonly #d: RetentionDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #compactMin: number;
  #items = new Map<string, RetainedItem>();
  #reconciled = false;
  /**
   * The log on disk continues the snapshot on disk and ends after a whole record, so the
   * next change may be appended; otherwise the next change compacts (writes both anew).
   * False until `load()` found both in step, after a failed append, and from the moment a
   * new snapshot is published until its log is.
   */
  #appendable = false;
  #snapshotBytes = 0;
  #logBytes = 0;
  /** Changes waiting for the write in flight (one append and fdatasync takes them all). */
  #batch: { records: LogRecord[]; done: Promise<void> } | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(deps: RetentionDeps) {
    this.#d = deps;
    this.#log = deps.logger.child('retention');
    this.#now = deps.now ?? Date.now;
    this.#compactMin = deps.compactMinLogBytes ?? COMPACT_MIN_LOG_BYTES;
  }

  get indexPath(): string {
    return join(this.#d.root, INDEX_FILE);
  }

  get logPath(): string {
    return join(this.#d.root, LOG_FILE);
  }

  items(): RetainedItem[] {
    return [...this.#items.values()];
  }

  /** Read the snapshot, replay its log, and reconcile both with the files present. */
  async load(): Promise<void> {
    await this.#writing;
    this.#items.clear();
    this.#appendable = false;
    this.#snapshotBytes = 0;
    this.#logBytes = 0;
    const b = await this.#d.fs.readIfExists(this.indexPath);
    let logInStep = false;
    if (b !== undefined) {
      const r = IndexSchema.safeParse(safeJson(b.toString('utf8')));
      if (r.success) {
        for (const it of r.data.items) this.#items.set(it.id, it);
        this.#snapshotBytes = b.length;
        // A v1 index (no generation) has no log: the first change writes both.
        if (r.data.generation !== undefined) logInStep = await this.#replay(r.data.generation);
      } else
        this.#log.error('retention index unreadable; rebuilding from the tree', {
          path: this.indexPath,
        });
    }
    let changed = b === undefined;
    const seen = new Set<string>();
    const known = new Set<string>();
    for (const it of this.#items.values()) known.add(it.path);
    for (const cls of RETENTION_CLASSES) {
      for (const file of await walk(join(this.#d.root, cls))) {
        const rel = relative(this.#d.root, file).split(sep).join('/');
        seen.add(rel);
        if (known.has(rel)) continue;
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
        known.add(rel);
        changed = true;
      }
    }
    for (const [id, it] of this.#items)
      if (!seen.has(it.path)) {
        this.#items.delete(id);
        changed = true;
      }
    // Not saved here: reconciling is repeatable, and a full disk (the case retention exists for)
    // must not stop the enforce() that frees space. The next add/markDelivered/enforce compacts.
    this.#reconciled = changed;
    this.#appendable = logInStep && !changed;
  }

  /**
   * Apply the log of snapshot `generation` to the items; true when it can be appended to
   * (its header names that generation and every record was whole).
   */
  async #replay(generation: string): Promise<boolean> {
    const raw = await this.#d.fs.readIfExists(this.logPath);
    if (raw === undefined) return false;
    const lines = raw.toString('utf8').split('\n');
    // After the last newline: nothing, or an append a power cut tore.
    const torn = lines.pop() ?? '';
    const header = LogHeaderSchema.safeParse(unframe(lines[0] ?? ''));
    if (!header.success) {
      this.#log.warn('retention log unreadable; ignored', { path: this.logPath });
      return false;
    }
    // A log of another generation: compaction stopped between the snapshot and a fresh log
    // (the snapshot holds its records), or an older hub rewrote the snapshot.
    if (header.data.generation !== generation) return false;
    let bad = 0;
    let firstBad: number | undefined;
    let offset = Buffer.byteLength(lines[0] ?? '') + 1;
    for (const line of lines.slice(1)) {
      const r = LogRecordSchema.safeParse(unframe(line));
      if (r.success) this.#apply(r.data);
      else {
        bad += 1;
        firstBad ??= offset;
      }
      offset += Buffer.byteLength(line) + 1;
    }
    if (torn !== '') {
      bad += 1;
      firstBad ??= offset;
    }
    if (bad > 0)
      this.#log.warn('retention log: skipped records that are torn or corrupt', {
        path: this.logPath,
        records: bad,
        atByte: firstBad,
      });
    this.#logBytes = raw.length;
    return bad === 0;
  }

  #apply(rec: LogRecord): void {
    if (rec.op === 'add') this.#items.set(rec.item.id, rec.item);
    else if (rec.op === 'remove') this.#items.delete(rec.id);
    else {
      const it = this.#items.get(rec.id);
      if (it !== undefined && !it.delivered) this.#items.set(rec.id, { ...it, delivered: true });
    }
  }

  /** True when the last load() found the index out of step with the tree. */
  get reconciled(): boolean {
    return this.#reconciled;
  }

  /**
   * Make changes already applied in memory durable: appended to the log (with the changes
   * of concurrent callers, one append and fdatasync), or a compaction when the log cannot
   * take them. Resolves once they survive a power cut.
   */
  #persist(records: LogRecord[]): Promise<void> {
    const open = this.#batch;
    if (open !== undefined) {
      open.records.push(...records);
      return open.done;
    }
    const batch = { records: [...records], done: Promise.resolve() };
    batch.done = this.#writing.then(() => {
      this.#batch = undefined;
      return this.#write(batch.records);
    });
    this.#batch = batch;
    this.#writing = batch.done.catch(() => undefined);
    return batch.done;
  }

  async #write(records: readonly LogRecord[]): Promise<void> {
    if (!this.#appendable) {
      await this.#compact();
      return;
    }
    const data = records.map(frameJson).join('');
    try {
      await this.#d.fs.append(this.logPath, data, 'retention-log');
    } catch (e) {
      // Part of it may be on disk: never append after that, compact next time.
      this.#appendable = false;
      throw e;
    }
    this.#logBytes += Buffer.byteLength(data);
    if (this.#logBytes <= Math.max(this.#snapshotBytes, this.#compactMin)) return;
    try {
      await this.#compact();
    } catch (e) {
      if (e instanceof SimulatedCrash) throw e; // a test's crash is not a failure to report
      // The changes are durable in the log (or in the new snapshot); the next change retries.
      this.#log.warn('retention index compaction failed; retrying at the next change', {
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  /**
   * Write every item as a new snapshot under a new generation, then a fresh log naming it.
   * Crash ordering: before the snapshot's rename the old snapshot and log stand; after it,
   * the old log names the old generation and is ignored (the new snapshot holds its records).
   */
  async #compact(): Promise<void> {
    const generation = randomBytes(8).toString('hex');
    const items = [...this.#items.values()].sort((a, b) => a.createdAt - b.createdAt);
    const f = await this.#d.fs.createAtomic(this.indexPath, 'retention-index');
    try {
      const head = `{"format":"vigil-retention-index","version":1,"generation":"${generation}","items":[`;
      await f.append([Buffer.from(head)]);
      for (let i = 0; i < items.length; i += SNAPSHOT_CHUNK_ITEMS) {
        const part = items.slice(i, i + SNAPSHOT_CHUNK_ITEMS).map((it) => JSON.stringify(it));
        await f.append([Buffer.from((i === 0 ? '' : ',') + part.join(','))]);
      }
      await f.append([Buffer.from(']}\n')]);
    } catch (e) {
      await f.discard();
      throw e;
    }
    this.#appendable = false;
    await f.commit();
    this.#snapshotBytes = f.bytes;
    const header = frameJson({ format: 'vigil-retention-log', version: 1, generation });
    await this.#d.fs.writeFileAtomic(this.logPath, header, 'retention-log');
    this.#logBytes = Buffer.byteLength(header);
    this.#appendable = true;
  }

  /** Record an item whose file already exists under <root>/<cls>/. */
  async add(item: RetainedItem): Promise<void> {
    const r = ItemSchema.safeParse(item);
    if (!r.success) {
      const i = r.error.issues[0];
      throw new ValidationError(
        `invalid retention item: ${i?.path.join('.') ?? ''}: ${i?.message ?? 'invalid'}`,
      );
    }
    if (!item.path.startsWith(`${item.cls}/`) || item.path.split('/').includes('..'))
      throw new ValidationError(`item path ${item.path} must live under ${item.cls}/`);
    this.#items.set(item.id, r.data);
    await this.#persist([{ op: 'add', item: r.data }]);
  }

  async markDelivered(id: string): Promise<boolean> {
    const it = this.#items.get(id);
    if (it === undefined || it.delivered) return false;
    this.#items.set(id, { ...it, delivered: true });
    await this.#persist([{ op: 'delivered', id }]);
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
    await this.#persist([{ op: 'remove', id }]);
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
    if (deleted.length > 0 || this.#reconciled)
      await this.#persist(deleted.map((d) => ({ op: 'remove', id: d.id })));
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

/** One log line: the record's JSON, a tab (JSON text has none), its CRC-32 in hex. */
function frameJson(rec: unknown): string {
  const json = JSON.stringify(rec);
  return `${json}\t${crc32(json).toString(16).padStart(8, '0')}\n`;
}

/** A log line's JSON value, or undefined when its frame or CRC does not hold. */
function unframe(line: string): unknown {
  const tab = line.lastIndexOf('\t');
  if (tab < 0 || line.length - tab !== 9) return undefined;
  const json = line.slice(0, tab);
  if (crc32(json).toString(16).padStart(8, '0') !== line.slice(tab + 1)) return undefined;
  return safeJson(json);
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
