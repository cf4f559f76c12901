/**
 * The scale-out metadata backend: the relay's records in PostgreSQL, and the
 * coordination of several relay processes through it (relay/cluster.ts).
 *
 *  - Records: one row per document in `relay_records (ns, id, doc jsonb)`.
 *    Every write and its notification commit together (one statement).
 *  - Changes: `NOTIFY vigil_relay` with {from, ns, id}; each process LISTENs
 *    on one dedicated connection and, in delivery order (PostgreSQL delivers
 *    notifications in commit order), reads the row's current value and hands
 *    it to the core. Reading the current row (not a payload copy) keeps the
 *    cache monotonic, also for changes queued while the process was loading.
 *  - Locks: session advisory locks, one pool connection held per lock, from a
 *    pool of their own (the work inside a lock uses the other pool, so lock
 *    holders never wait for one another's connections). A relay that dies
 *    loses its session and with it its locks.
 *  - Catch-up (`sync`): a NOTIFY to ourselves; once it comes back, every change
 *    committed before it was sent has been applied.
 *  - Live records: rows of an UNLOGGED table (`relay_live`), announced by
 *    NOTIFY, read by every other process into its own live window; swept after
 *    a minute. Failed authentications: rows of `relay_failures`, announced too.
 *  - Migrations: versioned, in `schema_migrations`, run at open under an
 *    advisory lock (concurrent starts wait for one another; a second run does nothing).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { VigilError } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { Cluster, ClusterHandlers, FailureMessage, LiveMessage } from './cluster.js';
import { checkKey, storageFull } from './store.js';
import type { RecordStore } from './store.js';

const CHANNEL = 'vigil_relay';
/** Advisory lock classes (first key of the two-int form): record locks, migrations. */
const LOCK_CLASS = 0x5647_4c31;
const MIGRATION_CLASS = 0x5647_4c30;
const LIVE_KEEP = "interval '1 minute'";

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'records, live records, authentication failures',
    sql: `
      CREATE TABLE relay_records (
        ns text NOT NULL,
        id text NOT NULL,
        doc jsonb NOT NULL,
        PRIMARY KEY (ns, id)
      );
      CREATE UNLOGGED TABLE relay_live (
        id bigserial PRIMARY KEY,
        device_id text NOT NULL,
        item_id text NOT NULL,
        idx integer NOT NULL,
        final boolean NOT NULL,
        data bytea NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX relay_live_at ON relay_live (at);
      CREATE TABLE relay_failures (
        addr text NOT NULL,
        target text,
        at bigint NOT NULL
      );
      CREATE INDEX relay_failures_at ON relay_failures (at);
    `,
  },
];

type NoteBody =
  | { k: 'r'; ns: string; id: string }
  | { k: 'b'; n: number }
  | { k: 'l'; id: string }
  | { k: 'x'; a: string; t?: string; at: number };
type Note = NoteBody & { f: string };

/** PostgreSQL's "disk full" (class 53: insufficient resources). */
function isPgNoSpace(e: unknown): boolean {
  return (e as { code?: string } | undefined)?.code === '53100';
}

function dbError(what: string, e: unknown): Error {
  if (isPgNoSpace(e)) return storageFull(e);
  if (e instanceof VigilError) return e;
  return new VigilError('EDATABASE', `database ${what} failed: ${(e as Error).message}`, {
    cause: e,
  });
}

/** Apply the migrations this database lacks; returns the versions applied now. */
export async function migrate(
  pool: pg.Pool,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  const c = await pool.connect();
  let broken = false;
  try {
    await c.query('SELECT pg_advisory_lock($1, 0)', [MIGRATION_CLASS]);
    try {
      await c.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const have = new Set(
        (await c.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
          (r) => r.version,
        ),
      );
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (have.has(m.version)) continue;
        await c.query('BEGIN');
        try {
          await c.query(m.sql);
          await c.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
            m.version,
            m.name,
          ]);
          await c.query('COMMIT');
        } catch (e) {
          await c.query('ROLLBACK');
          throw new VigilError('EMIGRATION', `migration ${m.version} (${m.name}) failed`, {
            cause: e,
          });
        }
        applied.push(m.version);
      }
      return applied;
    } finally {
      await c.query('SELECT pg_advisory_unlock($1, 0)', [MIGRATION_CLASS]).catch(() => {
        broken = true;
      });
    }
  } finally {
    c.release(broken);
  }
}

export interface PgStoreOptions {
  readonly logger: Logger;
  /** Connections for work (queries) and for held locks, each. */
  readonly poolSize?: number;
}

export class PgStore implements RecordStore, Cluster {
  readonly name = 'postgres';
  readonly #self = randomBytes(9).toString('base64url');
  readonly #log: Logger;
  readonly #work: pg.Pool;
  readonly #locks: pg.Pool;
  readonly #listener: pg.Client;
  #handlers: ClusterHandlers | undefined;
  /** Notifications received before `start` (the core was loading). */
  #buffered: Note[] = [];
  #chain: Promise<void> = Promise.resolve();
  #barrier = 0;
  readonly #barriers = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #lost: Error | undefined;
  #closing = false;
  #liveWrites = 0;

  private constructor(url: string, o: PgStoreOptions) {
    this.#log = o.logger;
    const max = o.poolSize ?? 16;
    this.#work = new pg.Pool({ connectionString: url, max });
    this.#locks = new pg.Pool({ connectionString: url, max });
    this.#listener = new pg.Client({ connectionString: url });
    for (const p of [this.#work, this.#locks])
      p.on('error', (e) => {
        this.#log.warn('idle database connection failed', { err: e });
      });
  }

  /** Connect, migrate, and LISTEN (changes are buffered until `start`). */
  static async open(url: string, o: PgStoreOptions): Promise<PgStore> {
    const s = new PgStore(url, o);
    try {
      const applied = await migrate(s.#work);
      if (applied.length > 0) s.#log.info('database migrated', { versions: applied });
      await s.#listener.connect();
      s.#listener.on('notification', (m) => {
        if (m.channel !== CHANNEL || m.payload === undefined) return;
        let note: Note;
        try {
          note = JSON.parse(m.payload) as Note;
        } catch {
          return;
        }
        if (s.#handlers) s.#enqueue(note);
        else s.#buffered.push(note);
      });
      const broke = (e: Error): void => {
        s.#fail(e);
      };
      s.#listener.on('error', broke);
      s.#listener.on('end', () => {
        broke(new VigilError('EDATABASE', 'the database change feed connection closed'));
      });
      await s.#listener.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      await s.close();
      throw dbError('connect', e);
    }
    return s;
  }

  #fail(e: Error): void {
    if (this.#closing || this.#lost) return;
    this.#lost = e;
    this.#log.error('database change feed lost', { err: e });
    for (const b of this.#barriers.values()) b.reject(e);
    this.#barriers.clear();
    this.#handlers?.lost(e);
  }

  #enqueue(n: Note): void {
    this.#chain = this.#chain
      .then(() => this.#apply(n))
      .catch((e: unknown) => {
        this.#fail(e instanceof Error ? e : new Error(String(e)));
      });
  }

  async #apply(n: Note): Promise<void> {
    const h = this.#handlers;
    if (!h) return;
    if (n.k === 'b') {
      if (n.f !== this.#self) return;
      for (const [k, b] of this.#barriers)
        if (k <= n.n) {
          this.#barriers.delete(k);
          b.resolve();
        }
      return;
    }
    if (n.f === this.#self) return;
    switch (n.k) {
      case 'r': {
        const r = await this.#work.query<{ doc: unknown }>(
          'SELECT doc FROM relay_records WHERE ns = $1 AND id = $2',
          [n.ns, n.id],
        );
        h.record(n.ns, n.id, r.rows[0]?.doc);
        return;
      }
      case 'l': {
        const r = await this.#work.query<{
          device_id: string;
          item_id: string;
          idx: number;
          final: boolean;
          data: Buffer;
        }>('SELECT device_id, item_id, idx, final, data FROM relay_live WHERE id = $1', [n.id]);
        const row = r.rows[0];
        if (row)
          h.live({
            deviceId: row.device_id,
            itemId: row.item_id,
            index: row.idx,
            final: row.final,
            data: row.data,
          });
        return;
      }
      case 'x':
        h.failure({ addr: n.a, target: n.t, at: n.at });
        return;
    }
  }

  #note(n: NoteBody): string {
    return JSON.stringify({ f: this.#self, ...n });
  }

  // ---- RecordStore ------------------------------------------------------------

  async put(ns: string, id: string, doc: unknown): Promise<void> {
    try {
      await this.#work.query(
        `WITH w AS (
           INSERT INTO relay_records (ns, id, doc) VALUES ($1, $2, $3)
           ON CONFLICT (ns, id) DO UPDATE SET doc = EXCLUDED.doc
           RETURNING 1)
         SELECT pg_notify('${CHANNEL}', $4) FROM w`,
        [checkKey(ns), checkKey(id), JSON.stringify(doc), this.#note({ k: 'r', ns, id })],
      );
    } catch (e) {
      throw dbError('write', e);
    }
  }

  async delete(ns: string, id: string): Promise<void> {
    try {
      await this.#work.query(
        `WITH d AS (DELETE FROM relay_records WHERE ns = $1 AND id = $2 RETURNING 1)
         SELECT pg_notify('${CHANNEL}', $3) FROM d`,
        [checkKey(ns), checkKey(id), this.#note({ k: 'r', ns, id })],
      );
    } catch (e) {
      throw dbError('delete', e);
    }
  }

  async loadAll(ns: string): Promise<{ id: string; doc: unknown }[]> {
    try {
      const r = await this.#work.query<{ id: string; doc: unknown }>(
        'SELECT id, doc FROM relay_records WHERE ns = $1 ORDER BY id',
        [checkKey(ns)],
      );
      return r.rows.map((x) => ({ id: x.id, doc: x.doc }));
    } catch (e) {
      throw dbError('read', e);
    }
  }

  // ---- Cluster -----------------------------------------------------------------

  async start(h: ClusterHandlers): Promise<void> {
    this.#handlers = h;
    const early = this.#buffered;
    this.#buffered = [];
    for (const n of early) this.#enqueue(n);
    await this.#chain;
  }

  async sync(): Promise<void> {
    if (this.#lost) throw this.#lost;
    if (!this.#handlers) return;
    const n = ++this.#barrier;
    const done = new Promise<void>((resolve, reject) => {
      this.#barriers.set(n, { resolve, reject });
    });
    try {
      await this.#work.query(`SELECT pg_notify('${CHANNEL}', $1)`, [this.#note({ k: 'b', n })]);
    } catch (e) {
      this.#barriers.delete(n);
      throw dbError('notify', e);
    }
    await done;
  }

  async exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    if (this.#lost) throw this.#lost;
    let c: pg.PoolClient;
    try {
      c = await this.#locks.connect();
      await c.query('SELECT pg_advisory_lock($1, hashtext($2))', [LOCK_CLASS, key]);
    } catch (e) {
      throw dbError('lock', e);
    }
    let broken = false;
    try {
      await this.sync();
      return await fn();
    } finally {
      try {
        await c.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, key]);
      } catch {
        broken = true; // dropping the session releases the lock
      }
      c.release(broken);
    }
  }

  async publishLive(m: LiveMessage): Promise<void> {
    try {
      this.#liveWrites += 1;
      await this.#work.query(
        `WITH w AS (
           INSERT INTO relay_live (device_id, item_id, idx, final, data)
           VALUES ($1, $2, $3, $4, $5) RETURNING id)
         SELECT pg_notify('${CHANNEL}', json_build_object('f', $6::text, 'k', 'l', 'id', w.id::text)::text)
         FROM w`,
        [m.deviceId, m.itemId, m.index, m.final, m.data, this.#self],
      );
      if (this.#liveWrites % 64 === 0)
        await this.#work.query(`DELETE FROM relay_live WHERE at < now() - ${LIVE_KEEP}`);
    } catch (e) {
      throw dbError('live write', e);
    }
  }

  async publishFailure(m: FailureMessage): Promise<void> {
    try {
      await this.#work.query(
        `WITH w AS (INSERT INTO relay_failures (addr, target, at) VALUES ($1, $2, $3) RETURNING 1)
         SELECT pg_notify('${CHANNEL}', $4) FROM w`,
        [
          m.addr,
          m.target ?? null,
          m.at,
          this.#note({
            k: 'x',
            a: m.addr,
            ...(m.target !== undefined ? { t: m.target } : {}),
            at: m.at,
          }),
        ],
      );
    } catch (e) {
      throw dbError('write', e);
    }
  }

  async recentFailures(sinceMs: number): Promise<FailureMessage[]> {
    try {
      await this.#work.query('DELETE FROM relay_failures WHERE at < $1', [sinceMs]);
      const r = await this.#work.query<{ addr: string; target: string | null; at: string }>(
        'SELECT addr, target, at FROM relay_failures WHERE at >= $1 ORDER BY at',
        [sinceMs],
      );
      return r.rows.map((x) => ({ addr: x.addr, target: x.target ?? undefined, at: Number(x.at) }));
    } catch (e) {
      throw dbError('read', e);
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    for (const b of this.#barriers.values())
      b.reject(new VigilError('ECLOSED', 'the relay store is closing'));
    this.#barriers.clear();
    await this.#chain.catch(() => undefined);
    await this.#listener.end().catch(() => undefined);
    await this.#work.end().catch(() => undefined);
    await this.#locks.end().catch(() => undefined);
  }
}
