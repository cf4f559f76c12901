import t from 'tap';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { RelayClient, RelayHttpError } from '../../protocol/relay-client.js';
import { pairPhone, raw, relayWith, tempDir } from './fixtures.js';
import { loopbackCertificate } from '../fixtures/tls.js';

async function rejects(p: Promise<unknown>, status: number): Promise<RelayHttpError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RelayHttpError && e.status === status) return e;
    throw new Error(`expected HTTP ${status}, got ${String(e)}`, { cause: e });
  }
  throw new Error(`expected HTTP ${status}, got success`);
}

t.test('upload, list, read, ack with per-phone reference counts', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device, phones } = await relayWith(dir, 2);
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const [a, b] = phones as [NonNullable<(typeof phones)[0]>, NonNullable<(typeof phones)[0]>];
  const part1 = randomBytes(1000);
  const part2 = randomBytes(500);
  let st = await device.client.append(
    'clip-0001',
    { group: 'motion', kind: 'clip', offset: 0, final: false },
    part1,
  );
  t.same(st, { itemId: 'clip-0001', seq: st.seq, received: 1000, complete: false });
  // a phone sees the item while it is still uploading and can stream what is there
  const listed = await a.client.list({});
  t.equal(listed.items.length, 1);
  t.equal(listed.items[0]?.complete, false);
  const early = await a.client.read(st.seq);
  t.same(early.data, part1);
  // a waiting reader is woken by the next append
  const waiting = a.client.read(st.seq, { offset: 1000, waitMs: 5000 });
  st = await device.client.append(
    'clip-0001',
    { group: 'motion', kind: 'clip', offset: 1000, final: true },
    part2,
  );
  t.same((await waiting).data, part2);
  t.equal(st.complete, true);
  t.same(await a.client.readAll(st.seq), Buffer.concat([part1, part2]));
  await a.client.ack(st.seq);
  t.equal((await a.client.list({})).items.length, 0, 'acked item leaves the acking phone mailbox');
  t.equal((await b.client.list({})).items.length, 1, 'other phone still holds it');
  t.equal(relay.core.stats().storedBytes, 1500);
  await b.client.ack(st.seq);
  t.equal(relay.core.stats().storedBytes, 0, 'deleted once every phone acked');
  await rejects(b.client.read(st.seq), 404);
  // a late retry of the last append cannot resurrect the item
  const again = await device.client.append(
    'clip-0001',
    { group: 'motion', kind: 'clip', offset: 1000, final: true },
    part2,
  );
  t.equal(again.complete, true);
  t.equal((await a.client.list({})).items.length, 0, 'no duplicate visible to phones');
  t.equal((await b.client.list({})).items.length, 0);
});

t.test(
  'resumable appends: duplicates are no-ops, gaps and overlaps answer 409 with the offset',
  async (t) => {
    const { dir, cleanup } = await tempDir();
    const { relay, device, phones } = await relayWith(dir, 1);
    t.teardown(async () => {
      await relay.close();
      await cleanup();
    });
    const p = { group: 'motion', kind: 'clip' as const, final: false };
    const x = randomBytes(100);
    await device.client.append('item-a', { ...p, offset: 0 }, x);
    const dup = await device.client.append('item-a', { ...p, offset: 0 }, x);
    t.equal(dup.received, 100, 'duplicate append answered with the current status');
    const gap = await rejects(device.client.append('item-a', { ...p, offset: 150 }, x), 409);
    t.equal((gap.body as { status: { received: number } }).status.received, 100);
    const overlap = await rejects(device.client.append('item-a', { ...p, offset: 50 }, x), 409);
    t.equal((overlap.body as { status: { received: number } }).status.received, 100);
    await rejects(device.client.append('item-b', { ...p, offset: 10 }, x), 409);
    t.equal(
      await device.client.uploadStatus('item-b'),
      undefined,
      'no item created by a bad first append',
    );
    await rejects(
      device.client.append(
        'item-a',
        { group: 'thumbnail', kind: 'thumbnail', offset: 100, final: false },
        x,
      ),
      409,
    );
    // finalize with an empty append
    const fin = await device.client.append(
      'item-a',
      { ...p, offset: 100, final: true },
      new Uint8Array(0),
    );
    t.equal(fin.complete, true);
    await rejects(device.client.append('item-a', { ...p, offset: 100 }, x), 409);
    t.same(await phones[0]!.client.readAll(fin.seq), x);
    t.same(await device.client.uploadStatus('item-a'), fin);
  },
);

t.test('restart loses nothing acknowledged', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const first = await relayWith(dir, 1, {}, 'dev-restart');
  const x = randomBytes(3000);
  const st = await first.device.client.append(
    'clip-r',
    { group: 'motion', kind: 'clip', offset: 0, final: false },
    x.subarray(0, 2000),
  );
  await first.phones[0]!.client.postUp('config', Buffer.from('heartbeat'));
  await first.relay.close();
  const { startRelay } = await import('../../relay/server.js');
  const relay = await startRelay({ dataDir: dir, logger: first.logger, port: 0 });
  t.teardown(() => relay.close());
  const dev = new RelayClient({ url: relay.url, token: first.device.token });
  const phone = new RelayClient({ url: relay.url, token: first.phones[0]!.token });
  t.same(
    await dev.uploadStatus('clip-r'),
    { itemId: 'clip-r', seq: st.seq, received: 2000, complete: false },
    'upload offset survives',
  );
  await dev.append(
    'clip-r',
    { group: 'motion', kind: 'clip', offset: 2000, final: true },
    x.subarray(2000),
  );
  t.same(await phone.readAll(st.seq), x);
  const up = await dev.list({});
  t.equal(up.items.length, 1, 'phone message survives');
  t.same((await dev.readAll(up.items[0]!.seq)).toString(), 'heartbeat');
  // sequence numbers keep growing after all items are gone (cursors stay valid)
  await phone.ack(st.seq);
  await dev.ack(up.items[0]!.seq);
  const st2 = await dev.append(
    'clip-r2',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    x,
  );
  t.ok(st2.seq > up.items[0]!.seq);
});

t.test('authorization: every route, every wrong principal', async (t) => {
  const { dir, cleanup } = await tempDir();
  const one = await relayWith(dir, 2, { limits: { lockoutFailures: 10_000 } }, 'dev-one');
  t.teardown(async () => {
    await one.relay.close();
    await cleanup();
  });
  const url = one.relay.url;
  const anon = new RelayClient({ url });
  const devTwoCred = await anon.registerDevice('dev-two');
  const two = { client: anon.withToken(devTwoCred.token), id: 'dev-two', token: devTwoCred.token };
  const twoPhone = await pairPhone(one.relay, two);
  const [pa, pb] = one.phones as [
    NonNullable<(typeof one.phones)[0]>,
    NonNullable<(typeof one.phones)[0]>,
  ];
  // an item for phone A only, and one for both
  const onlyA = await one.device.client.append(
    'for-a',
    { group: 'motion', kind: 'clip', offset: 0, final: true, to: [pa.id] },
    Buffer.from('secret-a'),
  );
  const both = await one.device.client.append(
    'for-both',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    Buffer.from('shared'),
  );
  const upMsg = await pa.client.postUp('config', Buffer.from('hb'));
  await one.device.client.appendLive('live-1', 0, false, Buffer.from('hdr'));

  // phone B cannot read, list or ack A's item
  t.same(
    (await pb.client.list({})).items.map((i) => i.itemId),
    ['for-both'],
  );
  await rejects(pb.client.read(onlyA.seq), 404);
  await rejects(pb.client.ack(onlyA.seq), 404);
  // device two's phone sees nothing of device one (same sequence numbers exist there)
  t.same((await twoPhone.client.list({})).items, []);
  await rejects(twoPhone.client.read(both.seq), 404);
  await rejects(twoPhone.client.ack(both.seq), 404);
  t.equal(await twoPhone.client.readLive({ waitMs: 0 }), undefined, 'no live from another device');
  // device two cannot read device one's up messages, status, or phones
  t.same((await two.client.list({})).items, []);
  await rejects(two.client.read(upMsg.seq), 404);
  t.equal(await two.client.uploadStatus('for-a'), undefined);
  t.same(await two.client.phones(), [
    { phoneId: twoPhone.id, createdAt: (await two.client.phones())[0]!.createdAt },
  ]);
  await rejects(two.client.removePhone(pa.id), 404);
  // a hub reading its own down items through the mailbox: not visible (mailbox shows what is waiting for the reader)
  await rejects(one.device.client.read(both.seq), 404);
  // phones cannot read up messages meant for the hub
  await rejects(pa.client.read(upMsg.seq), 404);
  // principal kind checks (403)
  await rejects(
    pa.client.append(
      'x-item',
      { group: 'motion', kind: 'clip', offset: 0, final: true },
      Buffer.from('x'),
    ),
    403,
  );
  await rejects(pa.client.uploadStatus('for-a'), 403);
  await rejects(pa.client.appendLive('live-x', 0, false, Buffer.from('x')), 403);
  await rejects(pa.client.offerRendezvous(randomBytes(18).toString('base64url')), 403);
  await rejects(pa.client.phones(), 403);
  await rejects(pa.client.removePhone(pb.id), 403);
  await rejects(one.device.client.postUp('config', Buffer.from('x')), 403);
  await rejects(one.device.client.readLive({}), 403);
  // no or wrong credentials (401) on every authenticated route
  const forged = `p.${pa.id}.${randomBytes(32).toString('base64url')}`;
  for (const tok of [
    undefined,
    forged,
    'garbage',
    `d.dev-one.${randomBytes(32).toString('base64url')}`,
  ]) {
    const c = new RelayClient(tok === undefined ? { url } : { url, token: tok });
    await rejects(c.list({}), 401);
    await rejects(c.read(both.seq), 401);
    await rejects(c.ack(both.seq), 401);
    await rejects(
      c.append(
        'y-item',
        { group: 'motion', kind: 'clip', offset: 0, final: true },
        Buffer.from('x'),
      ),
      401,
    );
    await rejects(c.uploadStatus('for-a'), 401);
    await rejects(c.appendLive('live-1', 1, false, Buffer.from('x')), 401);
    await rejects(c.readLive({}), 401);
    await rejects(c.liveInfo(), 401);
    await rejects(c.postUp('config', Buffer.from('x')), 401);
    await rejects(c.phones(), 401);
    await rejects(c.removePhone(pa.id), 401);
    await rejects(c.offerRendezvous(randomBytes(18).toString('base64url')), 401);
  }
  // nothing changed by all of that
  t.same(
    (await pa.client.list({})).items.map((i) => i.itemId),
    ['for-a', 'for-both'],
  );
  t.same(await pa.client.readAll(onlyA.seq), Buffer.from('secret-a'));
  t.equal((await one.device.client.list({})).items.length, 1);
  // a phone may remove itself; then its token is dead and its references are released
  await pa.client.removePhone(pa.id);
  await rejects(pa.client.list({}), 401);
  t.equal(one.relay.core.stats().phones, 2);
  t.same(
    (await pb.client.list({})).items.map((i) => i.itemId),
    ['for-both'],
  );
});

t.test('malformed and oversized requests: 4xx and no state change', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device, phones } = await relayWith(dir, 1, {
    limits: {
      maxAppendBytes: 1024,
      maxItemBytes: 2048,
      maxJsonBytes: 256,
      maxMessageBytes: 64,
      maxLiveRecordBytes: 64,
      maxDeviceBytes: 3100,
    },
  });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const url = relay.url;
  const dt = device.token;
  const pt = phones[0]!.token;
  await device.client.append(
    'base-item',
    { group: 'motion', kind: 'clip', offset: 0, final: false },
    randomBytes(1000),
  );
  const before = JSON.stringify(relay.core.stats());
  const cases: [string, string, Record<string, unknown>, number][] = [
    [
      'PUT',
      '/v1/items/ok-item?group=motion&kind=clip&offset=0',
      { token: dt, body: randomBytes(2000) },
      413,
    ],
    [
      'PUT',
      '/v1/items/base-item?group=motion&kind=clip&offset=1000',
      { token: dt, body: randomBytes(1049) },
      413,
    ],
    ['PUT', '/v1/items/ok-item?group=MOTION&kind=clip&offset=0', { token: dt, body: 'x' }, 400],
    ['PUT', '/v1/items/ok-item?group=motion&kind=video&offset=0', { token: dt, body: 'x' }, 400],
    ['PUT', '/v1/items/ok-item?group=motion&kind=clip&offset=-1', { token: dt, body: 'x' }, 400],
    [
      'PUT',
      '/v1/items/ok-item?group=motion&kind=clip&offset=0&offset=0',
      { token: dt, body: 'x' },
      400,
    ],
    [
      'PUT',
      '/v1/items/ok-item?group=motion&kind=clip&offset=0&extra=1',
      { token: dt, body: 'x' },
      400,
    ],
    [
      'PUT',
      '/v1/items/ok-item?group=motion&kind=clip&offset=0&final=yes',
      { token: dt, body: 'x' },
      400,
    ],
    ['PUT', '/v1/items/ok-item?group=motion&kind=live&offset=0', { token: dt, body: 'x' }, 400],
    [
      'PUT',
      '/v1/items/ok-item?group=motion&kind=clip&offset=0&to=nobody-here',
      { token: dt, body: 'x' },
      400,
    ],
    ['PUT', '/v1/items/bad..id?group=motion&kind=clip&offset=0', { token: dt, body: 'x' }, 400],
    ['PUT', '/v1/items/x?group=motion&kind=clip&offset=0', { token: dt, body: 'x' }, 400],
    ['PUT', '/v1/items/a/b?group=motion&kind=clip&offset=0', { token: dt, body: 'x' }, 404],
    ['POST', '/v1/live/live-item?index=0', { token: dt, body: randomBytes(65) }, 413],
    ['POST', '/v1/live/live-item?index=x', { token: dt, body: 'x' }, 400],
    ['POST', '/v1/up/config', { token: pt, body: randomBytes(65) }, 413],
    ['POST', '/v1/up/Config', { token: pt, body: 'x' }, 400],
    ['POST', '/v1/up/config?x=1', { token: pt, body: 'x' }, 400],
    ['GET', '/v1/mailbox/0', { token: pt }, 400],
    ['GET', '/v1/mailbox/abc', { token: pt }, 400],
    ['GET', '/v1/mailbox?after=x', { token: pt }, 400],
    ['GET', '/v1/mailbox?wait=1e9', { token: pt }, 400],
    ['DELETE', '/v1/mailbox/99', { token: pt }, 404],
    [
      'PUT',
      '/v1/rendezvous',
      { token: dt, body: '{"token":', headers: { 'content-type': 'application/json' } },
      400,
    ],
    [
      'PUT',
      '/v1/rendezvous',
      { token: dt, body: '{"token":"short"}', headers: { 'content-type': 'application/json' } },
      400,
    ],
    [
      'PUT',
      '/v1/rendezvous',
      {
        token: dt,
        body: JSON.stringify({ token: 'a'.repeat(30), more: 1 }),
        headers: { 'content-type': 'application/json' },
      },
      400,
    ],
    ['PUT', '/v1/rendezvous', { token: dt, body: JSON.stringify({ token: 'a'.repeat(30) }) }, 415],
    [
      'PUT',
      '/v1/rendezvous',
      {
        token: dt,
        body: JSON.stringify({ token: 'a'.repeat(300) }),
        headers: { 'content-type': 'application/json' },
      },
      413,
    ],
    [
      'POST',
      '/v1/devices',
      {
        body: JSON.stringify({ deviceId: 'a b' }),
        headers: { 'content-type': 'application/json' },
      },
      400,
    ],
    [
      'POST',
      '/v1/devices',
      {
        body: JSON.stringify({ deviceId: device.id }),
        headers: { 'content-type': 'application/json' },
      },
      409,
    ],
    ['GET', '/v2/health', {}, 404],
    ['GET', '/v1/nothing', { token: pt }, 404],
    ['PATCH', '/v1/mailbox/1', { token: pt }, 404],
    ['GET', `/v1/mailbox?${'a'.repeat(3000)}`, { token: pt }, 414],
  ];
  for (const [method, path, init, status] of cases) {
    const r = await raw(url, method, path, init);
    t.equal(r.status, status, `${method} ${path.slice(0, 80)} -> ${status}`);
    t.match(r.body, { error: String, message: String }, 'error body names a code and a reason');
  }
  t.equal(JSON.stringify(relay.core.stats()), before, 'no state changed');
  t.equal(await device.client.uploadStatus('ok-item'), undefined);
  t.equal((await device.client.uploadStatus('base-item'))?.received, 1000);
  // quota: a new item that would exceed the device quota is refused without creating it
  await device.client.append(
    'fill-1',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    randomBytes(1024),
  );
  await device.client.append(
    'fill-2',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    randomBytes(1024),
  );
  const q = await raw(url, 'PUT', '/v1/items/fill-3?group=motion&kind=clip&offset=0', {
    token: dt,
    body: randomBytes(1024),
  });
  t.equal(q.status, 507);
  t.equal(await device.client.uploadStatus('fill-3'), undefined);
});

t.test('brute-force lockout and rate limits', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, phones } = await relayWith(dir, 1, { limits: { lockoutFailures: 3 } });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const good = phones[0]!.client;
  const bad = new RelayClient({
    url: relay.url,
    token: `p.${phones[0]!.id}.${randomBytes(32).toString('base64url')}`,
  });
  for (let i = 0; i < 3; i++) await rejects(bad.list({}), 401);
  const locked = await rejects(good.list({}), 429);
  t.equal(locked.relayCode, 'ELOCKED', 'even the right token is refused from a locked address');
  t.ok(relay.core.stats().phones === 1);
  // failed rendezvous claims count too
  const { dir: d2, cleanup: c2 } = await tempDir();
  const r2 = await relayWith(d2, 0, {
    limits: { lockoutFailures: 2, ratePerSec: 1, rateBurst: 5 },
  });
  t.teardown(async () => {
    await r2.relay.close();
    await c2();
  });
  // token-bucket rate limit per principal
  let limited: RelayHttpError | undefined;
  for (let i = 0; i < 10 && !limited; i++) {
    try {
      await r2.device.client.phones();
    } catch (e) {
      limited = e as RelayHttpError;
    }
  }
  t.equal(limited?.status, 429);
  t.equal(limited?.relayCode, 'ERATE');
  const anon = new RelayClient({ url: r2.relay.url });
  await rejects(anon.claimRendezvous('x'.repeat(30)), 404);
  await rejects(anon.claimRendezvous('y'.repeat(30)), 404);
  t.equal((await rejects(anon.claimRendezvous('z'.repeat(30)), 429)).relayCode, 'ELOCKED');
});

t.test('enrollment token and rendezvous rules', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device } = await relayWith(
    dir,
    0,
    { enrollToken: 'enroll-me-please' },
    'dev-enrolled',
  );
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const anon = new RelayClient({ url: relay.url });
  await rejects(anon.registerDevice('dev-other'), 401);
  await rejects(anon.registerDevice('dev-other', 'wrong'), 401);
  t.equal(relay.core.stats().devices, 1);
  const tok = randomBytes(18).toString('base64url');
  await device.client.offerRendezvous(tok);
  const c = await anon.claimRendezvous(tok);
  t.equal(c.deviceId, 'dev-enrolled');
  await rejects(anon.claimRendezvous(tok), 404); // single use
  t.same(
    (await device.client.phones()).map((p) => p.phoneId),
    [c.id],
  );
  // expired offers are refused
  await device.client.offerRendezvous('e'.repeat(30), 1000);
  await new Promise((r) => setTimeout(r, 1100));
  await rejects(anon.claimRendezvous('e'.repeat(30)), 404);
});

t.test('up messages, long-poll and live records', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device, phones, logger } = await relayWith(dir, 1, {
    limits: { liveWindowBytes: 300 },
  });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const phone = phones[0]!.client;
  const polled = device.client.list({ waitMs: 5000 });
  const marker = 'PAYLOAD-MARKER-' + randomBytes(8).toString('hex');
  await phone.postUp('config', Buffer.from(marker));
  const got = await polled;
  t.equal(got.items.length, 1, 'long-poll woke on the message');
  t.equal(got.items[0]?.from, phones[0]!.id);
  t.same((await device.client.readAll(got.items[0]!.seq)).toString(), marker);
  await device.client.ack(got.items[0]!.seq);
  t.same((await device.client.list({})).items, []);
  // an empty long-poll returns after its wait with the cursor unchanged
  t.same(await device.client.list({ after: 5, waitMs: 50 }), { items: [], cursor: 5 });

  // live: header first, then the newest records; gaps (dropped frames) are skipped
  const hdr = await device.client.appendLive('live-a', 0, false, Buffer.from('H'.repeat(100)));
  t.equal(hdr.next, 1);
  const r0 = await phone.readLive({ waitMs: 1000 });
  t.equal(r0?.index, 0);
  const waitNext = phone.readLive({ itemId: 'live-a', after: 0, waitMs: 5000 });
  await device.client.appendLive('live-a', 2, false, Buffer.from('B'.repeat(100)));
  const r2 = await waitNext;
  t.equal(r2?.index, 2, 'record 1 was dropped by the hub: the reader skips it');
  t.same((await phone.readLive({ itemId: 'live-a', after: 0 }))?.index, 2);
  for (let i = 3; i < 8; i++)
    await device.client.appendLive('live-a', i, i === 7, Buffer.from(String(i).repeat(100)));
  const info = await phone.liveInfo();
  t.equal(info.next, 8);
  t.equal(info.complete, true);
  t.ok(info.first >= 0);
  const late = await phone.readLive({});
  t.equal(late?.index, 0, 'the header is never evicted');
  const after2 = await phone.readLive({ itemId: 'live-a', after: 2 });
  t.ok(
    after2 !== undefined && after2.index >= 6,
    `old records evicted past the window (got ${after2?.index})`,
  );
  const last = await phone.readLive({ itemId: 'live-a', after: 6 });
  t.equal(last?.final, true);
  // a new live item replaces the old one; a reader on the old id gets the new header
  await device.client.appendLive('live-b', 0, false, Buffer.from('new'));
  const nb = await phone.readLive({ itemId: 'live-a', after: 7 });
  t.equal(nb?.itemId, 'live-b');
  t.equal(nb?.index, 0);
  t.notOk(
    logger.lines.some((l) => l.includes(marker)),
    'payloads never logged',
  );
  t.ok(
    logger.lines.some((l) => l.includes('"path":"/v1/up/config"')),
    'requests are logged (without bodies)',
  );
});

t.test('serves HTTPS directly with a certificate', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { request } = await import('node:https');
  const { cert, key } = await loopbackCertificate(dir);
  const { startRelay } = await import('../../relay/server.js');
  const { SILENT } = await import('../../base/logger.js');
  const relay = await startRelay({
    dataDir: `${dir}/data`,
    logger: SILENT,
    tls: { cert, key },
  });
  t.teardown(() => relay.close());
  t.match(relay.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(`${relay.url}/v1/health`, { ca: cert }, (res) => {
      let s = '';
      res.on('data', (d: Buffer) => (s += d.toString()));
      res.on('end', () => {
        resolve(s);
      });
    });
    req.on('error', reject);
    req.end();
  });
  t.same(JSON.parse(body), { ok: true }, 'health over TLS, certificate verified');
});

// ---- hardening after the outside probe (issue 18) -------------------------------------

async function outcome(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (e) {
    if (e instanceof RelayHttpError) return e.status;
    throw e;
  }
}

t.test(
  'lockout bypass (probe): a valid request between wrong guesses erases nothing',
  async (t) => {
    for (const guess of ['rendezvous claims', 'device secrets'] as const) {
      const { dir, cleanup } = await tempDir();
      const { relay, device } = await relayWith(dir, 0, {}, 'dev-attacker');
      t.teardown(async () => {
        await relay.close();
        await cleanup();
      });
      const anon = new RelayClient({ url: relay.url });
      await anon.registerDevice('dev-victim');
      const wrong = (): Promise<unknown> =>
        guess === 'rendezvous claims'
          ? anon.claimRendezvous(randomBytes(18).toString('base64url'))
          : new RelayClient({
              url: relay.url,
              token: `d.dev-victim.${randomBytes(32).toString('base64url')}`,
            }).phones();
      // the probe's sequence: 9 wrong, then 1 valid request with the attacker's own device
      const seen: number[] = [];
      for (let round = 0; round < 40 && !seen.includes(429); round++) {
        for (let i = 0; i < 9 && !seen.includes(429); i++) seen.push(await outcome(wrong()));
        seen.push(await outcome(device.client.phones()));
      }
      // 9 wrong, 1 valid, then the 10th wrong guess locks: the request after it is refused
      t.equal(seen.indexOf(429), 11, `${guess}: the 10th wrong guess locked the address`);
      t.equal(
        (await rejects(device.client.phones(), 429)).relayCode,
        'ELOCKED',
        `${guess}: even the attacker's valid credential is refused now`,
      );
    }
  },
);

t.test('lockout per target: guesses spread over addresses lose an address each', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device } = await relayWith(
    dir,
    0,
    { trustProxy: true, limits: { lockoutTargetFailures: 3 } },
    'dev-victim',
  );
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const guess = (addr: string, token: string): Promise<{ status: number; body: unknown }> =>
    raw(relay.url, 'GET', '/v1/phones', { token, headers: { 'x-forwarded-for': addr } });
  const bad = (): string => `d.dev-victim.${randomBytes(32).toString('base64url')}`;
  for (const a of ['10.0.0.1', '10.0.0.2', '10.0.0.3'])
    t.equal((await guess(a, bad())).status, 401, `one guess from ${a}`);
  t.equal((await guess('10.0.0.4', bad())).status, 401);
  const after = await guess('10.0.0.4', device.token);
  t.equal(after.status, 429, 'one failure against the guarded account locked 10.0.0.4');
  t.match(after.body, { error: 'ELOCKED' });
  t.equal(
    (await guess('10.0.0.9', device.token)).status,
    200,
    'the account itself is never locked',
  );
});

t.test('offer oracle (probe): a token in use answers like a fresh one and counts', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device: victim } = await relayWith(
    dir,
    0,
    { trustProxy: true, limits: { lockoutFailures: 3, maxOffersPerDevice: 4 } },
    'dev-victim',
  );
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const anon = new RelayClient({ url: relay.url });
  const attacker = await anon.registerDevice('dev-attacker');
  const offer = (token: string): Promise<{ status: number; body: unknown }> =>
    raw(relay.url, 'PUT', '/v1/rendezvous', {
      token: attacker.token,
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '10.9.9.9' },
      body: JSON.stringify({ token, ttlMs: 60_000 }),
    });
  const victimToken = randomBytes(18).toString('base64url');
  await victim.client.offerRendezvous(victimToken);
  // fresh offers: never a failure; one device holds at most 4
  for (let i = 0; i < 10; i++) {
    const r = await offer(randomBytes(18).toString('base64url'));
    t.equal(r.status, 200);
  }
  t.equal(relay.core.stats().offers, 1 + 4, 'the victim offer plus 4 of the attacker, not 10');
  const fresh = await offer(randomBytes(18).toString('base64url'));
  const taken = await offer(victimToken);
  t.equal(taken.status, fresh.status, 'same status');
  t.same(Object.keys(taken.body as object), Object.keys(fresh.body as object), 'same answer');
  t.ok(
    Math.abs(
      (taken.body as { expiresAt: number }).expiresAt -
        (fresh.body as { expiresAt: number }).expiresAt,
    ) < 60_000,
  );
  // but those attempts count: the third locks the address
  t.equal((await offer(victimToken)).status, 200);
  t.equal((await offer(victimToken)).status, 200);
  const locked = await offer(randomBytes(18).toString('base64url'));
  t.equal(locked.status, 429);
  t.match(locked.body, { error: 'ELOCKED' });
  // and the shadow took nothing: the phone meets the victim
  const c = await anon.claimRendezvous(victimToken);
  t.equal(c.deviceId, 'dev-victim');
});

t.test('registration caps: per address and in total', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, logger } = await relayWith(dir, 0, {
    trustProxy: true,
    limits: { maxRegistrationsPerAddress: 2, maxDevices: 3 },
  });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  t.ok(
    logger.lines.some((l) => l.includes('"level":"warn"') && l.includes('registration is open')),
    'open registration is announced',
  );
  const reg = (id: string, addr: string): Promise<{ status: number; body: unknown }> =>
    raw(relay.url, 'POST', '/v1/devices', {
      headers: { 'content-type': 'application/json', 'x-forwarded-for': addr },
      body: JSON.stringify({ deviceId: id }),
    });
  t.equal((await reg('dev-a1', '10.1.1.1')).status, 201);
  t.equal((await reg('dev-a2', '10.1.1.1')).status, 201);
  const third = await reg('dev-a3', '10.1.1.1');
  t.equal(third.status, 429, 'two registrations per address per window');
  t.match(third.body, { error: 'ERATE' });
  const full = await reg('dev-b1', '10.1.1.2');
  t.equal(full.status, 507, 'three devices in total (the fixture registered one)');
  t.match(full.body, { error: 'EQUOTA' });
  t.equal(relay.core.stats().devices, 3);
});

/** A raw TCP connection and what happened to it. */
async function connect(port: number): Promise<{
  socket: Socket;
  closed: Promise<string>;
}> {
  const socket = netConnect(port, '127.0.0.1');
  let data = '';
  socket.on('data', (d: Buffer) => (data += d.toString()));
  socket.on('error', () => undefined);
  const closed = new Promise<string>((resolve) => {
    socket.once('close', () => {
      resolve(data);
    });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, closed };
}

/** Send one request and wait for the first bytes of an answer (or the close). */
function ask(socket: Socket, text: string): Promise<string> {
  return new Promise((resolve) => {
    const onData = (d: Buffer): void => {
      finish(d.toString());
    };
    const onClose = (): void => {
      finish('');
    };
    const finish = (text: string): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(text);
    };
    socket.once('data', onData);
    socket.once('close', onClose);
    socket.write(text);
  });
}

const HEALTH = 'GET /v1/health HTTP/1.1\r\nHost: relay\r\n\r\n';

t.test('connections per address are capped', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { startRelay } = await import('../../relay/server.js');
  const { SILENT } = await import('../../base/logger.js');
  const relay = await startRelay({
    dataDir: dir,
    logger: SILENT,
    limits: { maxConnectionsPerAddress: 3 },
  });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const open = [];
  for (let i = 0; i < 3; i++) {
    const c = await connect(relay.port);
    t.match(await ask(c.socket, HEALTH), /^HTTP\/1\.1 200/, `connection ${i + 1} served`);
    open.push(c);
  }
  const fourth = await connect(relay.port);
  t.equal(await ask(fourth.socket, HEALTH), '', 'the 4th connection is closed unanswered');
  t.equal(await fourth.closed, '');
  open[0]!.socket.destroy();
  await open[0]!.closed;
  // the server learns of the close on its own schedule: try until a slot is free
  let answer = '';
  for (let i = 0; i < 100 && answer === ''; i++) {
    const c = await connect(relay.port);
    answer = await ask(c.socket, HEALTH);
    c.socket.destroy();
  }
  t.match(answer, /^HTTP\/1\.1 200/, 'a closed connection frees its slot');
  for (const c of open) c.socket.destroy();
});

t.test('behind a trusted proxy: in-flight requests per forwarded address are capped', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device } = await relayWith(dir, 0, {
    trustProxy: true,
    limits: { maxConnectionsPerAddress: 2 },
  });
  t.teardown(cleanup);
  const poll = (addr: string): Promise<{ status: number; body: unknown }> =>
    raw(relay.url, 'GET', '/v1/mailbox?wait=30000', {
      token: device.token,
      headers: { 'x-forwarded-for': addr },
    }).catch(() => ({ status: 0, body: 'closed' }));
  // three long-polls from one forwarded address: whichever arrives third is refused at once
  const polls = [poll('10.5.5.5'), poll('10.5.5.5'), poll('10.5.5.5')];
  const first = await Promise.race(polls);
  t.equal(first.status, 429);
  t.match(first.body, { error: 'ECONNLIMIT' });
  const other = await raw(relay.url, 'GET', '/v1/phones', {
    token: device.token,
    headers: { 'x-forwarded-for': '10.5.5.6' },
  });
  t.equal(other.status, 200, 'another forwarded address is not affected');
  await relay.close();
  await Promise.all(polls);
});

t.test('slow bodies time out; client aborts are not server errors', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { startRelay } = await import('../../relay/server.js');
  const { JsonLogger } = await import('../../base/logger.js');
  const lines: string[] = [];
  let onLine = (): void => undefined;
  const logger = new JsonLogger('relay', {
    level: 'debug',
    write: (l) => {
      lines.push(l);
      onLine();
    },
  });
  const until = (pred: (l: string) => boolean): Promise<string> =>
    new Promise((resolve) => {
      const check = (): void => {
        const hit = lines.find(pred);
        if (hit !== undefined) resolve(hit);
      };
      onLine = check;
      check();
    });
  // the whole request must arrive within 300 ms + 1000 bytes at 1000 bytes/s
  const relay = await startRelay({
    dataDir: dir,
    logger,
    limits: { headersTimeoutMs: 300, maxAppendBytes: 1000, minBodyBytesPerSec: 1000 },
  });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const cred = await new RelayClient({ url: relay.url }).registerDevice('dev-slow');
  const head = (id: string, extra = ''): string =>
    `PUT /v1/items/${id}?group=motion&kind=clip&offset=0 HTTP/1.1\r\nHost: relay\r\n` +
    `Authorization: Bearer ${cred.token}\r\nContent-Length: 1000\r\n${extra}\r\n`;
  // a body that never completes: answered 408 and closed, not held for minutes
  const slow = await connect(relay.port);
  slow.socket.write(head('slow-item') + 'x'.repeat(10));
  t.match(await slow.closed, /^HTTP\/1\.1 408/, 'the slow body timed out');
  // a client that gives up mid-upload (100-continue: the handler is reading the body)
  const quitter = await connect(relay.port);
  t.match(
    await ask(quitter.socket, head('quit-item', 'Expect: 100-continue\r\n')),
    /^HTTP\/1\.1 100/,
  );
  quitter.socket.write('x'.repeat(10));
  quitter.socket.destroy();
  await quitter.closed;
  const done = await until(
    (l) => l.includes('"msg":"request"') && l.includes('"status":"aborted"'),
  );
  t.match(done, /"level":"debug"/);
  t.notOk(
    lines.some((l) => l.includes('"level":"error"')),
    'neither is logged as an error',
  );
  t.equal(relay.core.stats().items, 0, 'nothing was stored');
});

/** Mount a small tmpfs (root only; no loop devices needed): the error when it cannot be done. */
async function tmpfsProbe(): Promise<string | false> {
  const { run } = await import('../../hw/os/run.js');
  const { dir, cleanup } = await tempDir('vigil-tmpfs-probe-');
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { timeoutMs: 30_000 });
    await run('umount', [dir], { timeoutMs: 30_000 });
    return false;
  } catch (e) {
    return `cannot mount a tmpfs here (${(e as Error).message.split('\n')[0] ?? ''})`;
  } finally {
    await cleanup();
  }
}

t.test(
  'a really full disk: uploads answer 507, acknowledgements still work and free space',
  { skip: await tmpfsProbe() },
  async (t) => {
    const { run } = await import('../../hw/os/run.js');
    const { open, readdir, statfs } = await import('node:fs/promises');
    const { dir, cleanup } = await tempDir();
    await run('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', dir], { timeoutMs: 30_000 });
    const { relay, device, phones } = await relayWith(dir, 2, {
      limits: { storageReserveBytes: 128 * 1024, maxAppendBytes: 512 * 1024 },
    });
    t.teardown(async () => {
      await relay.close();
      await run('umount', [dir], { timeoutMs: 30_000 });
      await cleanup();
    });
    const clip = randomBytes(256 * 1024);
    const stored: number[] = [];
    const fill = async (size: number): Promise<RelayHttpError> => {
      for (let i = 0; ; i++) {
        try {
          const st = await device.client.append(
            `clip-${size}-${i}`,
            { group: 'motion', kind: 'clip', offset: 0, final: true },
            clip.subarray(0, size),
          );
          stored.push(st.seq);
        } catch (e) {
          if (!(e instanceof RelayHttpError)) throw e;
          return e;
        }
      }
    };
    const full = await fill(clip.length);
    t.equal(full.status, 507, 'a full disk answers 507');
    t.equal(full.relayCode, 'ENOSPACE');
    t.ok(stored.length > 5, `${stored.length} clips fit before`);
    for (const size of [32 * 1024, 4096, 512, 1]) t.equal((await fill(size)).status, 507);
    // and someone else takes whatever is left, to the last byte
    const filler = await open(`${dir}/filler`, 'w');
    for (const size of [65536, 4096, 512, 1])
      await (async () => {
        for (;;) await filler.write(Buffer.alloc(size));
      })().catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      });
    await filler.close();
    const fs = await statfs(dir);
    t.equal(fs.bavail, 0, 'the filesystem really is full');
    const walk = async (d: string): Promise<string[]> =>
      (await readdir(d, { recursive: true })).map(String).filter((n) => n.endsWith('.tmp'));
    t.same(await walk(dir), [], 'a failed write leaves no temp file behind');
    // the first phone's acks rewrite records (nothing is freed yet), the second's delete blobs
    const [a, b] = phones as [NonNullable<(typeof phones)[0]>, NonNullable<(typeof phones)[0]>];
    for (const seq of stored) await a.client.ack(seq);
    t.equal((await a.client.list({})).items.length, 0, 'every ack of phone A succeeded');
    for (const seq of stored) await b.client.ack(seq);
    t.equal(relay.core.stats().storedBytes, 0, 'every ack of phone B succeeded; blobs deleted');
    const after = await statfs(dir);
    t.ok(after.bavail * after.bsize > 5 * clip.length, 'space came back');
    const again = await device.client.append(
      'clip-after',
      { group: 'motion', kind: 'clip', offset: 0, final: true },
      clip,
    );
    t.same(await a.client.readAll(again.seq), clip, 'uploads work again');
  },
);

t.test("a phone's wire formats, byte for byte as docs/protocol.md gives them", async (t) => {
  const { dir, cleanup } = await tempDir();
  const { startRelay } = await import('../../relay/server.js');
  const { MemoryLogger } = await import('../../base/logger.js');
  const relay = await startRelay({ dataDir: dir, logger: new MemoryLogger('relay') });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const json = { 'content-type': 'application/json' };
  const token = (s: string): RegExp =>
    new RegExp(`^${s}\\.[A-Za-z0-9_-]{4,64}\\.[A-Za-z0-9_-]{43,86}$`);
  // account creation (the hub) and claim (the phone)
  const dev = await raw(relay.url, 'POST', '/v1/devices', {
    headers: json,
    body: JSON.stringify({ deviceId: 'ABCDEFGHIJKLMNOP' }),
  });
  t.equal(dev.status, 201);
  t.same(Object.keys(dev.body as object).sort(), ['deviceId', 'id', 'principal', 'token']);
  t.match(dev.body, { principal: 'device', id: 'ABCDEFGHIJKLMNOP', deviceId: 'ABCDEFGHIJKLMNOP' });
  const devToken = (dev.body as { token: string }).token;
  t.match(devToken, token('d'));
  const pairing = randomBytes(16).toString('hex');
  const offer = await raw(relay.url, 'PUT', '/v1/rendezvous', {
    token: devToken,
    headers: json,
    body: JSON.stringify({ token: pairing }),
  });
  t.equal(offer.status, 200);
  t.same(Object.keys(offer.body as object), ['expiresAt']);
  const claim = await raw(relay.url, 'POST', '/v1/rendezvous/claim', {
    headers: json,
    body: JSON.stringify({ token: pairing }),
  });
  t.equal(claim.status, 201);
  t.same(Object.keys(claim.body as object).sort(), ['deviceId', 'id', 'principal', 'token']);
  t.match(claim.body, { principal: 'phone', deviceId: 'ABCDEFGHIJKLMNOP' });
  const phone = claim.body as { id: string; token: string };
  t.match(phone.token, token('p'));
  t.ok(phone.token.startsWith(`p.${phone.id}.`), 'the phone id is the token middle');
  const again = await raw(relay.url, 'POST', '/v1/rendezvous/claim', {
    headers: json,
    body: JSON.stringify({ token: pairing }),
  });
  t.match(again, { status: 404, body: { error: 'ENOTFOUND' } }, 'single use');

  // up: raw bytes (the sealed MLS message), no query; the answer names the relay seq
  const sealed = randomBytes(300);
  const up = await raw(relay.url, 'POST', '/v1/up/config', { token: phone.token, body: sealed });
  t.equal(up.status, 200);
  t.same(Object.keys(up.body as object), ['seq']);

  // down: a kind=message item (one append, final) addressed to the phone
  const reply = randomBytes(200);
  const put = await raw(
    relay.url,
    'PUT',
    `/v1/items/cfg-abcd?group=config&kind=message&offset=0&final=1&to=${phone.id}`,
    {
      token: devToken,
      body: reply,
    },
  );
  t.equal(put.status, 200);
  const listed = await raw(relay.url, 'GET', '/v1/mailbox?after=0', { token: phone.token });
  t.equal(listed.status, 200);
  const list = listed.body as { items: Record<string, unknown>[]; cursor: number };
  t.same(Object.keys(list).sort(), ['cursor', 'items']);
  t.equal(list.items.length, 1, "the phone's own up message is not listed to it");
  const item = list.items[0] ?? {};
  t.same(Object.keys(item).sort(), [
    'complete',
    'createdAt',
    'from',
    'group',
    'itemId',
    'kind',
    'seq',
    'size',
  ]);
  t.match(item, {
    itemId: 'cfg-abcd',
    group: 'config',
    kind: 'message',
    from: 'ABCDEFGHIJKLMNOP',
    size: 200,
    complete: true,
  });
  t.equal(list.cursor, item.seq, 'cursor = the last seq listed');
  t.ok(
    Math.abs(Number(item.createdAt) - Date.now()) < 3_600_000,
    'createdAt: ms on the relay clock',
  );
  const res = await fetch(`${relay.url}/v1/mailbox/${String(item.seq)}?offset=50`, {
    headers: { authorization: `Bearer ${phone.token}` },
  });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'application/octet-stream');
  t.same(
    {
      id: res.headers.get('x-vigil-item-id'),
      kind: res.headers.get('x-vigil-kind'),
      group: res.headers.get('x-vigil-group'),
      received: res.headers.get('x-vigil-received'),
      complete: res.headers.get('x-vigil-complete'),
    },
    { id: 'cfg-abcd', kind: 'message', group: 'config', received: '200', complete: '1' },
    'read headers: received counts the whole item, not this answer',
  );
  t.same(Buffer.from(await res.arrayBuffer()), reply.subarray(50), 'the bytes from offset');
  const empty = await raw(relay.url, 'GET', '/v1/mailbox?after=' + String(list.cursor), {
    token: phone.token,
  });
  t.same(empty.body, { items: [], cursor: list.cursor }, 'nothing after the cursor: it stays');
  const ack = await raw(relay.url, 'DELETE', `/v1/mailbox/${String(item.seq)}`, {
    token: phone.token,
  });
  t.same(ack, { status: 200, body: { ok: true } });
  // the hub sees the up message: from = the phone's relay id, kind message, the bytes as sent
  const hubList = await raw(relay.url, 'GET', '/v1/mailbox?group=config', { token: devToken });
  t.match(hubList.body, {
    items: [{ group: 'config', kind: 'message', from: phone.id, size: 300, complete: true }],
  });
});
