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
import type { RelayOptions } from '../../relay/server.js';
import { decodePushMessage } from '../../protocol/push.js';
import { PgStore } from '../../relay/pg-store.js';
import { PUSH_NS } from '../../relay/push.js';
import type { PushEvent, PushTransport, RelayPush } from '../../relay/push.js';
import { decryptAes128gcm, newSubscriptionKeys } from '../fixtures/web-push.js';
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
  const pair = async (
    t: Test,
    limits: Partial<RelayLimits> = {},
    push: (relay: 'a' | 'b') => RelayOptions['push'] = () => undefined,
  ) => {
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
      ...withPush(push('a')),
    });
    const b = await startRelay({
      dataDir: `${dir}/${name}b`,
      logger: SILENT,
      blobs,
      database,
      limits,
      ...withPush(push('b')),
    });
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    const dev = await new RelayClient({ url: a.url }).registerDevice(`dev-${name}`);
    return {
      deviceId: `dev-${name}`,
      database,
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
  const withPush = (p: RelayOptions['push']): Partial<RelayOptions> =>
    p === undefined ? {} : { push: p };
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

  /** Resolve with the next event of `type` from any of `relays`. */
  const nextPush = <T extends PushEvent['type']>(
    relays: readonly RelayPush[],
    type: T,
  ): Promise<{ from: RelayPush; e: Extract<PushEvent, { type: T }> }> =>
    new Promise((resolve) => {
      const offs = relays.map((r) =>
        r.onEvent((e) => {
          if (e.type !== type) return;
          for (const off of offs) off();
          resolve({ from: r, e: e as Extract<PushEvent, { type: T }> });
        }),
      );
    });

  t.test(
    'push state is shared: registered through a, delivered through b; a dead endpoint leaves both; one "unseen"',
    async (t) => {
      const sent: { via: 'a' | 'b'; endpoint: string; body: Buffer }[] = [];
      let answer = 201;
      const transport =
        (via: 'a' | 'b'): PushTransport =>
        (req) => {
          sent.push({ via, endpoint: req.endpoint, body: req.body });
          return Promise.resolve({ status: answer });
        };
      const UNSEEN_MS = 4000;
      // the "hub keeps talking" loop below sends requests back to back for 2 × UNSEEN_MS;
      // a fast machine outruns the default token bucket (429 ERATE), which is not under test
      const p = await pair(t, { ratePerSec: 1e6, rateBurst: 1e6 }, (via) => ({
        transport: transport(via),
        unseenAfterMs: UNSEEN_MS,
        retry: { initialMs: 10, maxMs: 10, attempts: 2 },
      }));
      const [pa, pb] = [p.a.push as RelayPush, p.b.push as RelayPush];
      t.equal(pa.vapidPublicKey, pb.vapidPublicKey, 'one VAPID key for both relays');
      const ph = await p.phone();
      const phoneId = (await p.devA.phones())[0]?.phoneId as string;
      const keys = newSubscriptionKeys();
      const ep1 = 'https://push.example/sub/1';
      const reg = await ph.onA.registerPush({ endpoint: ep1, keys: keys.json });

      // a notice uploaded through b goes to the endpoint registered through a
      const delivered = nextPush([pa, pb], 'delivered');
      await p.devB.append(
        'notice-1',
        { group: 'notification', kind: 'message', offset: 0, final: true },
        Buffer.from('sealed notice'),
      );
      const d = await delivered;
      t.equal(d.from, pb, 'delivered by the relay the hub uploaded to');
      t.match(d.e, { endpointId: reg.id, phoneId });
      const msg = decodePushMessage(decryptAes128gcm(sent[0]?.body as Buffer, keys));
      t.match(msg.ok && msg.value, {
        t: 'notice',
        group: 'notification',
        mls: Buffer.from('sealed notice').toString('base64url'),
      });
      t.same(
        sent.map((x) => [x.via, x.endpoint]),
        [['b', ep1]],
      );

      // the endpoint is gone (410 at b): dropped from the shared store, so a forgets it too
      answer = 410;
      const dropped = nextPush([pa, pb], 'dropped');
      await p.devB.append(
        'notice-2',
        { group: 'notification', kind: 'message', offset: 0, final: true },
        Buffer.from('second'),
      );
      t.match((await dropped).e, { endpointId: reg.id, status: 410 });
      await p.a.core.sync();
      t.same(await ph.onA.pushEndpoints(), [], 'a lists no endpoint');
      t.equal(pa.endpointCount(phoneId), 0);
      const store = await PgStore.open(p.database, { logger: SILENT });
      t.teardown(() => store.close());
      t.same(await store.loadAll(PUSH_NS.endpoints), [], 'and the shared store holds none');

      // "unseen": the hub talks to b only; a (where the phone registered) must not
      // announce while b sees it, and the outage is announced once, by one relay
      answer = 201;
      const keys2 = newSubscriptionKeys();
      await ph.onA.registerPush({ endpoint: 'https://push.example/sub/2', keys: keys2.json });
      const events: { via: RelayPush; e: PushEvent }[] = [];
      let wake = (): void => undefined;
      for (const r of [pa, pb])
        r.onEvent((e) => {
          events.push({ via: r, e });
          wake();
        });
      const waitFor = async (done: () => boolean): Promise<void> => {
        while (!done())
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
      };
      const unseenEvents = () => events.filter((x) => x.e.type === 'unseen');
      const until = Date.now() + 2 * UNSEEN_MS;
      let lastRequest = 0;
      while (Date.now() < until) {
        lastRequest = Date.now();
        await p.devB.uploadStatus('notice-1');
      }
      t.same(unseenEvents(), [], 'no "unseen" while the hub kept talking to b');
      // the hub goes quiet: one relay announces, the other finds it announced
      await waitFor(() => unseenEvents().length > 0);
      const first = unseenEvents()[0] as {
        via: RelayPush;
        e: Extract<PushEvent, { type: 'unseen' }>;
      };
      const other = first.via === pa ? pb : pa;
      await waitFor(() => events.some((x) => x.via === other && x.e.type === 'unseen-already'));
      t.equal(unseenEvents().length, 1, 'announced by one relay');
      t.ok(first.e.since >= lastRequest - 1000, 'since: the last request b served (shared with a)');
      const unseenSent = sent.filter((x) => {
        if (x.endpoint !== 'https://push.example/sub/2') return false;
        const m = decodePushMessage(decryptAes128gcm(x.body, keys2));
        return m.ok && m.value.t === 'unseen';
      });
      t.equal(unseenSent.length, 1, 'pushed once, by one relay');
    },
  );
}
