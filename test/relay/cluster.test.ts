/**
 * Two relays on one PostgreSQL database and one blob store, in this process
 * (the multi-process test is test/integration/relay-scale.test.ts): the
 * operations where two relays could race — acknowledgements and their
 * reference counts, rendezvous claims, quotas, lockout counters — and the
 * wake-ups and live records that cross from one to the other.
 */
import t from 'tap';
import type { Test } from 'tap';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { SILENT } from '../../base/logger.js';
import { postgresAvailable, startPostgres } from '../../dev/fixtures/postgres.js';
import { RelayClient, RelayHttpError } from '../../protocol/relay-client.js';
import { startRelay } from '../../relay/server.js';
import type { RelayLimits } from '../../relay/limits.js';
import { MemoryBlobStore } from '../../relay/store.js';
import { tempDir } from './fixtures.js';

if (!(await postgresAvailable())) {
  t.plan(0, 'PostgreSQL is not installed (apt install postgresql)');
} else {
  const pgc = await startPostgres();
  t.teardown(() => pgc.stop());
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);

  let n = 0;
  /** Two relays sharing a fresh database and one blob store. */
  const pair = async (t: Test, limits: Partial<RelayLimits> = {}) => {
    const name = `c${++n}`;
    const admin = new pg.Client({ connectionString: pgc.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const database = pgc.url.replace('/postgres?', `/${name}?`);
    const blobs = new MemoryBlobStore();
    const a = await startRelay({
      dataDir: `${dir}/${name}a`,
      logger: SILENT,
      blobs,
      database,
      limits,
    });
    const b = await startRelay({
      dataDir: `${dir}/${name}b`,
      logger: SILENT,
      blobs,
      database,
      limits,
    });
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    const dev = await new RelayClient({ url: a.url }).registerDevice(`dev-${name}`);
    return {
      deviceId: `dev-${name}`,
      a,
      b,
      blobs,
      devA: new RelayClient({ url: a.url, token: dev.token }),
      devB: new RelayClient({ url: b.url, token: dev.token }),
      /** Pair a phone (offered through a, claimed through b) and return clients on both relays. */
      async phone() {
        const tok = randomBytes(18).toString('base64url');
        await new RelayClient({ url: a.url, token: dev.token }).offerRendezvous(tok);
        const c = await new RelayClient({ url: b.url }).claimRendezvous(tok);
        return {
          onA: new RelayClient({ url: a.url, token: c.token }),
          onB: new RelayClient({ url: b.url, token: c.token }),
        };
      },
    };
  };
  const status = (e: unknown): number => (e instanceof RelayHttpError ? e.status : -1);

  t.test('accounts made through one relay work at once through the other', async (t) => {
    const p = await pair(t);
    const ph = await p.phone();
    t.same((await p.devB.phones()).length, 1, 'the hub sees the phone paired through b');
    await p.devB.append(
      'item-1',
      { group: 'g', kind: 'clip', offset: 0, final: true },
      Buffer.from('x'),
    );
    t.same(
      (await ph.onA.list({})).items.map((i) => i.itemId),
      ['item-1'],
    );
  });

  t.test(
    'acks of two phones on two relays: the item goes once both acked, never before',
    async (t) => {
      const p = await pair(t);
      const [p1, p2] = [await p.phone(), await p.phone()];
      const N = 12;
      for (let i = 0; i < N; i++)
        await p.devA.append(
          `item-${i}`,
          { group: 'g', kind: 'clip', offset: 0, final: true },
          randomBytes(100),
        );
      const items = (await p1.onA.list({})).items;
      t.equal(items.length, N);
      t.equal(p.blobs.blobs.size, N);
      // both phones ack every item at once, one through each relay
      await Promise.all(items.flatMap((it) => [p1.onA.ack(it.seq), p2.onB.ack(it.seq)]));
      t.equal(p.blobs.blobs.size, 0, 'every blob deleted (no lost update of the reference count)');
      await p.a.core.sync();
      await p.b.core.sync();
      t.equal(p.a.core.stats().items, 0);
      t.equal(p.b.core.stats().items, 0);
      // one ack alone keeps the item
      await p.devB.append(
        'keep',
        { group: 'g', kind: 'clip', offset: 0, final: true },
        randomBytes(10),
      );
      const [k] = (await p1.onB.list({ after: items.at(-1)?.seq ?? 0 })).items;
      await p1.onA.ack(k?.seq ?? 0);
      t.equal((await p2.onB.read(k?.seq ?? 0)).data.length, 10, 'still there for the other phone');
    },
  );

  t.test('a pairing token claimed through both relays at once pairs one phone', async (t) => {
    const p = await pair(t);
    for (let round = 0; round < 5; round++) {
      const tok = randomBytes(18).toString('base64url');
      await p.devA.offerRendezvous(tok);
      const r = await Promise.allSettled([
        new RelayClient({ url: p.a.url }).claimRendezvous(tok),
        new RelayClient({ url: p.b.url }).claimRendezvous(tok),
      ]);
      t.equal(r.filter((x) => x.status === 'fulfilled').length, 1, `round ${round}: one winner`);
      const lost = r.find((x) => x.status === 'rejected');
      t.equal(status(lost?.reason), 404);
    }
    t.equal((await p.devB.phones()).length, 5);
  });

  t.test('quotas hold over both relays', async (t) => {
    const p = await pair(t, { maxDeviceItems: 5 });
    await p.phone();
    const r = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 ? p.devA : p.devB).append(
          `quota-${i}`,
          { group: 'g', kind: 'clip', offset: 0, final: true },
          Buffer.from('q'),
        ),
      ),
    );
    t.equal(r.filter((x) => x.status === 'fulfilled').length, 5, 'exactly the quota stored');
    for (const x of r) if (x.status === 'rejected') t.equal(status(x.reason), 507);
    // sequence numbers are unique across the relays
    const seqs = r.flatMap((x) => (x.status === 'fulfilled' ? [x.value.seq] : []));
    t.equal(new Set(seqs).size, 5);
  });

  t.test('failed authentications count on every relay', async (t) => {
    const p = await pair(t, { lockoutFailures: 6 });
    const bad = (url: string) =>
      new RelayClient({ url, token: `d.${p.deviceId}.${'A'.repeat(43)}` }).uploadStatus('x');
    for (let i = 0; i < 5; i++) t.equal(status(await bad(p.a.url).catch((e: unknown) => e)), 401);
    await p.b.core.sync();
    t.equal(status(await bad(p.b.url).catch((e: unknown) => e)), 401, 'the 6th failure, on b');
    // b locked the address; a hears of the failure and locks it too
    t.equal(status(await p.devB.uploadStatus('x').catch((e: unknown) => e)), 429, 'locked on b');
    await p.a.core.sync();
    t.equal(status(await p.devA.uploadStatus('x').catch((e: unknown) => e)), 429, 'locked on a');
  });

  t.test('long-polls and live records cross relays', async (t) => {
    const p = await pair(t);
    const ph = await p.phone();
    // a phone waiting on b is woken by an upload through a
    const waiting = ph.onB.list({ waitMs: 30_000 });
    const reading = waiting.then(async (l) =>
      ph.onB.readAll(l.items[0]?.seq ?? 0, { waitMs: 30_000 }),
    );
    const part1 = randomBytes(5000);
    const part2 = randomBytes(3000);
    await p.devA.append('clip', { group: 'g', kind: 'clip', offset: 0, final: false }, part1);
    t.equal((await waiting).items[0]?.itemId, 'clip', 'woken by the append on the other relay');
    await p.devA.append('clip', { group: 'g', kind: 'clip', offset: 5000, final: true }, part2);
    t.same(await reading, Buffer.concat([part1, part2]), 'streamed while uploading');

    const live = ph.onB.readLive({ waitMs: 30_000 });
    await p.devA.appendLive('live-1', 0, false, Buffer.from('header'));
    const r0 = await live;
    t.same(
      r0 && { i: r0.index, d: r0.data.toString() },
      { i: 0, d: 'header' },
      'live record crossed',
    );
    const next = ph.onB.readLive({ itemId: 'live-1', after: 0, waitMs: 30_000 });
    await p.devA.appendLive('live-1', 1, true, Buffer.from('init'));
    t.same((await next)?.data.toString(), 'init');
    t.same(await ph.onB.liveInfo(), { itemId: 'live-1', first: 0, next: 2, complete: true });
  });
}
