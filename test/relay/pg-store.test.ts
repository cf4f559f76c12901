/**
 * The PostgreSQL metadata store against a private PostgreSQL cluster
 * (dev/fixtures/postgres.ts): the record store contract (run against the
 * embedded file store too), versioned migrations under concurrent starts, and
 * the coordination of two stores as two relay processes see it.
 */
import { stat } from 'node:fs/promises';
import t from 'tap';
import type { Test } from 'tap';
import pg from 'pg';
import { SILENT } from '../../base/logger.js';
import { DurableFs } from '../../hw/os/fs.js';
import { postgresAvailable, startPostgres } from '../../dev/fixtures/postgres.js';
import type { PostgresCluster } from '../../dev/fixtures/postgres.js';
import type { ClusterHandlers, FailureMessage, LiveMessage } from '../../relay/cluster.js';
import { MIGRATIONS, PgStore, migrate } from '../../relay/pg-store.js';
import { PUSH_NS } from '../../relay/push.js';
import { FsRecordStore } from '../../relay/store.js';
import type { RecordStore } from '../../relay/store.js';
import { tempDir } from './fixtures.js';

if (!(await postgresAvailable())) {
  t.plan(0, 'PostgreSQL is not installed (apt install postgresql)');
} else {
  const cluster: PostgresCluster = await startPostgres();
  t.teardown(() => cluster.stop());

  let dbs = 0;
  /** A fresh database on the cluster; returns its URL. */
  const freshDb = async (): Promise<string> => {
    const name = `t${++dbs}`;
    const c = new pg.Client({ connectionString: cluster.url });
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    await c.end();
    return cluster.url.replace('/postgres?', `/${name}?`);
  };

  /** The RecordStore contract: what the core relies on, whatever the backend. */
  const contract = async (t: Test, rec: RecordStore): Promise<void> => {
    t.same(await rec.loadAll('items'), [], 'empty namespace');
    await rec.put('items', 'd.2', { a: 2 });
    await rec.put('items', 'd.1', { a: 1, nested: { list: [1, 'x', null] } });
    await rec.put('phones', 'p1', { b: true });
    t.same(
      await rec.loadAll('items'),
      [
        { id: 'd.1', doc: { a: 1, nested: { list: [1, 'x', null] } } },
        { id: 'd.2', doc: { a: 2 } },
      ],
      'documents come back whole, ordered by id, per namespace',
    );
    await rec.put('items', 'd.2', { a: 3 });
    t.same((await rec.loadAll('items'))[1], { id: 'd.2', doc: { a: 3 } }, 'a put replaces');
    await rec.delete('items', 'd.1');
    await rec.delete('items', 'd.1');
    t.same(
      (await rec.loadAll('items')).map((x) => x.id),
      ['d.2'],
      'deleted (twice is fine)',
    );
    t.same(await rec.loadAll('phones'), [{ id: 'p1', doc: { b: true } }], 'namespaces apart');
    await t.rejects(rec.put('items', '../x', {}), { code: 'EKEY' }, 'bad id refused');
    await t.rejects(rec.put('a b', 'x', {}), { code: 'EKEY' }, 'bad namespace refused');
    // push state (relay/push.ts) is records too: so every relay process on one store shares it
    const vapid = { v: 1, publicKey: 'B'.repeat(87), privateKey: 'p'.repeat(43) };
    await rec.put(PUSH_NS.vapid, 'key', vapid, { secret: true });
    const phone = {
      v: 1,
      phoneId: 'phone-1',
      deviceId: 'dev-1',
      endpoints: [
        {
          id: 'e'.repeat(22),
          endpoint: 'https://push.example/s',
          p256dh: 'k',
          auth: 'a',
          createdAt: 1,
        },
      ],
    };
    await rec.put(PUSH_NS.endpoints, 'phone-1', phone);
    await rec.put(PUSH_NS.seen, 'dev-1', { v: 1, deviceId: 'dev-1', seenAt: 5, announcedAt: 9 });
    t.same(await rec.loadAll(PUSH_NS.vapid), [{ id: 'key', doc: vapid }], 'a secret record');
    t.same(await rec.loadAll(PUSH_NS.endpoints), [{ id: 'phone-1', doc: phone }]);
    t.same(await rec.loadAll(PUSH_NS.seen), [
      { id: 'dev-1', doc: { v: 1, deviceId: 'dev-1', seenAt: 5, announcedAt: 9 } },
    ]);
    await rec.delete(PUSH_NS.endpoints, 'phone-1');
    t.same(await rec.loadAll(PUSH_NS.endpoints), [], 'a dropped endpoint record is gone');
  };

  t.test('record store contract: files', async (t) => {
    const { dir, cleanup } = await tempDir();
    t.teardown(cleanup);
    await contract(t, new FsRecordStore(`${dir}/r`, new DurableFs()));
    t.equal(
      (await stat(`${dir}/r/${PUSH_NS.vapid}`)).mode & 0o777,
      0o700,
      'a secret record lives in an owner-only directory',
    );
  });

  t.test('record store contract: PostgreSQL', async (t) => {
    const store = await PgStore.open(await freshDb(), { logger: SILENT });
    t.teardown(() => store.close());
    await contract(t, store);
  });

  t.test('migrations: versioned, once each, concurrent starts wait for one another', async (t) => {
    const url = await freshDb();
    const pool = new pg.Pool({ connectionString: url, max: 8 });
    t.teardown(() => pool.end());
    const runs = await Promise.all([migrate(pool), migrate(pool), migrate(pool)]);
    t.same(
      runs.flat().sort(),
      MIGRATIONS.map((m) => m.version),
      'each migration applied by exactly one of three concurrent starts',
    );
    t.same(await migrate(pool), [], 'a later start applies nothing');
    const rows = await pool.query<{ version: number }>(
      'SELECT version FROM schema_migrations ORDER BY version',
    );
    t.same(
      rows.rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    // a later version is applied on the next start; a failing one rolls back and says which
    const next = [
      ...MIGRATIONS,
      { version: 99, name: 'test column', sql: 'ALTER TABLE relay_records ADD COLUMN t int' },
    ];
    t.same(await migrate(pool, next), [99]);
    const bad = [...next, { version: 100, name: 'broken', sql: 'CREATE TABLE relay_records ()' }];
    await t.rejects(migrate(pool, bad), {
      code: 'EMIGRATION',
      message: /migration 100 \(broken\)/,
    });
    const after = await pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM schema_migrations WHERE version = 100',
    );
    t.equal(after.rows[0]?.n, '0', 'the failed migration is not recorded');
  });

  /** Handlers that record what a store delivered, with waiters on each kind. */
  class Seen implements ClusterHandlers {
    records: { ns: string; id: string; doc: unknown }[] = [];
    lives: LiveMessage[] = [];
    failures: FailureMessage[] = [];
    lostWith: Error | undefined;
    #lostWaiters: ((e: Error) => void)[] = [];
    record(ns: string, id: string, doc: unknown): void {
      this.records.push({ ns, id, doc });
    }
    live(m: LiveMessage): void {
      this.lives.push(m);
    }
    failure(m: FailureMessage): void {
      this.failures.push(m);
    }
    lost(err: Error): void {
      this.lostWith = err;
      for (const w of this.#lostWaiters) w(err);
    }
    whenLost(): Promise<Error> {
      if (this.lostWith) return Promise.resolve(this.lostWith);
      return new Promise((r) => this.#lostWaiters.push(r));
    }
  }

  t.test('two stores: changes, catch-up, locks across processes', async (t) => {
    const url = await freshDb();
    const a = await PgStore.open(url, { logger: SILENT });
    const b = await PgStore.open(url, { logger: SILENT });
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    const seenA = new Seen();
    const seenB = new Seen();
    // a change made before `start` (while the core loads) is delivered after it
    await a.put('devices', 'early', { n: 1 });
    await a.start(seenA);
    await b.start(seenB);
    await b.sync();
    t.same(seenB.records, [{ ns: 'devices', id: 'early', doc: { n: 1 } }], 'buffered change');
    t.same(seenA.records, [], 'a store does not hear its own changes');

    await a.put('items', 'd.1', { v: 1 });
    await a.put('items', 'd.1', { v: 2 });
    await a.delete('items', 'd.1');
    await b.sync();
    const docs = seenB.records.slice(1).map((r) => r.doc);
    t.equal(docs.length, 3, 'a notice per change');
    // each notice reads the row as it is then: never older than what was read before
    t.equal(docs.at(-1), undefined, 'catch-up: after sync every earlier change was applied');
    t.notOk(
      docs.findIndex((d) => (d as { v?: number } | undefined)?.v === 1) >
        docs.findIndex((d) => (d as { v?: number } | undefined)?.v === 2) &&
        docs.some((d) => (d as { v?: number } | undefined)?.v === 2),
      'never an older value after a newer one',
    );

    // exclusive: b cannot enter while a holds the key, and enters seeing a's writes
    let releaseA!: () => void;
    const holdA = new Promise<void>((r) => {
      releaseA = r;
    });
    const order: string[] = [];
    let entered!: () => void;
    const aIn = new Promise<void>((r) => {
      entered = r;
    });
    const pa = a.exclusive('dev/x', async () => {
      order.push('a in');
      entered();
      await holdA;
      await a.put('devices', 'x', { nextSeq: 7 });
      order.push('a out');
    });
    await aIn;
    const pb = b.exclusive('dev/x', () => {
      order.push('b in');
      return Promise.resolve(seenB.records.at(-1));
    });
    // wait until b's lock request is queued behind a's in PostgreSQL
    const probe = new pg.Client({ connectionString: url });
    await probe.connect();
    t.teardown(() => probe.end());
    for (;;) {
      const w = await probe.query(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
      );
      if (w.rowCount) break;
      await new Promise((r) => setImmediate(r));
    }
    t.same(order, ['a in'], 'b waits while a holds the lock');
    releaseA();
    await pa;
    t.same(
      await pb,
      { ns: 'devices', id: 'x', doc: { nextSeq: 7 } },
      'b entered after a caught up',
    );
    t.same(order, ['a in', 'a out', 'b in']);
    // other keys do not wait
    await Promise.all([a.exclusive('dev/y', () => b.exclusive('dev/z', () => Promise.resolve()))]);
    t.pass('different keys are independent');

    // live records and failures reach the other store
    const data = Buffer.alloc(300_000, 7);
    await a.publishLive({ deviceId: 'd', itemId: 'live-1', index: 0, final: false, data });
    await a.publishFailure({ addr: '192.0.2.1', target: 'device:d', at: 1000 });
    await a.publishFailure({ addr: '192.0.2.2', target: undefined, at: 2000 });
    await b.sync();
    t.equal(seenB.lives.length, 1);
    t.same(seenB.lives[0]?.data, data, 'a live record crosses whole');
    t.same(seenB.failures, [
      { addr: '192.0.2.1', target: 'device:d', at: 1000 },
      { addr: '192.0.2.2', target: undefined, at: 2000 },
    ]);
    t.same(
      await b.recentFailures(1500),
      [{ addr: '192.0.2.2', target: undefined, at: 2000 }],
      'a starting process reads the failures of the window (older ones are swept)',
    );

    // the change feed breaking is reported (the relay stops serving)
    const listeners = await probe.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' ORDER BY backend_start DESC LIMIT 1",
    );
    await probe.query('SELECT pg_terminate_backend($1)', [listeners.rows[0]?.pid]);
    const lost = await seenB.whenLost();
    t.match(lost.message, /terminat|closed|Connection/i, 'lost reported');
    await t.rejects(b.sync(), 'sync refuses once the feed is lost');
    await t.rejects(
      b.exclusive('k', () => Promise.resolve()),
      'locks refuse too',
    );
    t.equal(seenA.lostWith, undefined, 'the other store is unaffected');
  });

  t.test('a bad database URL is a clear error', async (t) => {
    await t.rejects(
      PgStore.open(cluster.url.replace('/postgres?', '/nosuchdb?'), { logger: SILENT }),
      { code: 'EDATABASE', message: /database connect failed: .*nosuchdb/ },
    );
  });
}
