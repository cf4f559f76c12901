/**
 * The hub's commit journal (persist before merge). One record per epoch
 * advance, `journal/<seq>.rec`, JSON:
 *
 *   { v: 1, seq, itemId, group, createdAt,
 *     entries: [{ phoneId, epoch, handshake, state? }] }
 *
 * Life of a record:
 *  1. written (public handshakes only) BEFORE any group file changes;
 *  2. each phone's group file is replaced with the state its entry leads to;
 *  3. kept as the re-send log until every phone's heartbeat shows it passed
 *     `epoch`, then removed.
 * On start, an entry above its phone's group file epoch is dropped (never
 * applied: its handshake never left the hub), as is the earlier of two entries
 * for one phone, group and epoch (the hub, firmware/mls/hub.ts).
 * `state` is only in records of hubs before issue #19's two-write advance (the
 * record carried the next states, then was rewritten without them): a record
 * that still has states is applied on start, then stripped.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../../hw/os/fs.js';
import { GROUP_KINDS } from '../../protocol/mls-profile.js';
import { MlsStateError } from './store.js';

const b64u = z.string().regex(/^[A-Za-z0-9_-]*$/);

export const JournalEntry = z.strictObject({
  phoneId: z.string().regex(/^[0-9a-f]{8,64}$/),
  epoch: z.string().regex(/^[0-9]{1,20}$/),
  handshake: b64u,
  state: b64u.optional(),
});
export type JournalEntry = z.infer<typeof JournalEntry>;

export const JournalRecord = z.strictObject({
  v: z.literal(1),
  seq: z.number().int().positive(),
  itemId: z.string().regex(/^[0-9a-f]{32}$/),
  group: z.enum(GROUP_KINDS),
  createdAt: z.number().int().nonnegative(),
  entries: z.array(JournalEntry),
});
export type JournalRecord = z.infer<typeof JournalRecord>;

/** Most records kept for re-sending; a phone further behind must re-pair. */
export const MAX_JOURNAL_RECORDS = 2000;

export class Journal {
  readonly dir: string;
  readonly fs: DurableFs;
  #records = new Map<number, JournalRecord>();
  #nextSeq = 1;

  constructor(dir: string, fs: DurableFs) {
    this.dir = dir;
    this.fs = fs;
  }

  file(seq: number): string {
    return join(this.dir, `${String(seq).padStart(12, '0')}.rec`);
  }

  /** Load every record (ordered by seq). */
  async load(): Promise<JournalRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      names = [];
    }
    const recs: JournalRecord[] = [];
    for (const n of names.filter((x) => /^[0-9]{12}\.rec$/.test(x)).sort()) {
      const raw = await this.fs.readIfExists(join(this.dir, n));
      if (raw === undefined) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw.toString('utf8'));
      } catch (e) {
        throw new MlsStateError('EMLS_STATE_CORRUPT', `journal record ${n} is not JSON`, {
          cause: e,
        });
      }
      const r = JournalRecord.safeParse(parsed);
      if (!r.success)
        throw new MlsStateError(
          'EMLS_STATE_CORRUPT',
          `journal record ${n} is invalid: ${r.error.issues[0]?.message ?? ''}`,
        );
      recs.push(r.data);
    }
    this.#records = new Map(recs.map((r) => [r.seq, r]));
    this.#nextSeq = recs.reduce((m, r) => Math.max(m, r.seq), 0) + 1;
    return recs;
  }

  nextSeq(): number {
    return this.#nextSeq++;
  }

  /**
   * The hub builds `rec` itself (typed), so it is not re-validated here: the
   * schema runs where records come back from disk (`load`), not on every epoch
   * advance (issue #19: zod off the hot path).
   */
  async write(rec: JournalRecord, label: string): Promise<void> {
    await this.fs.writeFileAtomic(this.file(rec.seq), JSON.stringify(rec), label);
    this.#records.set(rec.seq, rec);
  }

  /** Remove phones' entries from a record in memory only (their group write failed: never send them). */
  dropEntries(seq: number, phoneIds: readonly string[]): void {
    const rec = this.#records.get(seq);
    if (rec === undefined) return;
    this.#records.set(seq, {
      ...rec,
      entries: rec.entries.filter((e) => !phoneIds.includes(e.phoneId)),
    });
  }

  async remove(seq: number): Promise<void> {
    await this.fs.remove(this.file(seq), 'mls-journal-prune');
    this.#records.delete(seq);
  }

  /** How many records are held. */
  get size(): number {
    return this.#records.size;
  }

  get records(): JournalRecord[] {
    return [...this.#records.values()].sort((a, b) => a.seq - b.seq);
  }
}

export function stripStates(rec: JournalRecord): JournalRecord {
  return {
    ...rec,
    entries: rec.entries.map(({ phoneId, epoch, handshake }) => ({ phoneId, epoch, handshake })),
  };
}

export function isApplied(rec: JournalRecord): boolean {
  return rec.entries.every((e) => e.state === undefined);
}
