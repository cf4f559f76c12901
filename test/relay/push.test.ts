import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { DurableFs } from '../../hw/os/fs.js';
import { decodePushMessage } from '../../protocol/push.js';
import { openPush } from '../../app/push.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { PUSH_NS, RelayPush, checkEndpointUrl } from '../../relay/push.js';
import { FsRecordStore } from '../../relay/store.js';
import type { PushEvent, PushTransport } from '../../relay/push.js';
import { manualClock } from '../fixtures/manual-clock.js';
import { decryptAes128gcm, newSubscriptionKeys, verifyVapid } from '../fixtures/web-push.js';
import { raw, relayWith, tempDir } from './fixtures.js';

/** A transport answering from a script; every request is kept. */
function scripted(statuses: number[]) {
  const sent: { endpoint: string; headers: Readonly<Record<string, string>>; body: Buffer }[] = [];
  const transport: PushTransport = (req) => {
    sent.push(req);
    const status = statuses.length > 1 ? (statuses.shift() as number) : (statuses[0] as number);
    return Promise.resolve({ status });
  };
  return { sent, transport };
}

/** Resolve with the next event of `type`. */
function nextEvent<T extends PushEvent['type']>(
  push: RelayPush,
  type: T,
): Promise<Extract<PushEvent, { type: T }>> {
  return new Promise((resolve) => {
    const off = push.onEvent((e) => {
      if (e.type !== type) return;
      off();
      resolve(e as Extract<PushEvent, { type: T }>);
    });
  });
}

const EP = 'https://push.example/sub/1';

async function openPush_(
  t: { teardown(fn: () => unknown): void },
  o: Partial<Parameters<typeof RelayPush.open>[0]> = {},
) {
  const { dir, cleanup } = await tempDir('vigil-push-');
  t.teardown(cleanup);
  const { clock, advance } = manualClock();
  const records = new FsRecordStore(join(dir, 'records'), new DurableFs());
  const push = await RelayPush.open({
    records,
    logger: new MemoryLogger('push'),
    clock,
    retry: { initialMs: 1000, maxMs: 8000, attempts: 4 },
    ...o,
  });
  t.teardown(() => push.close());
  return { push, advance, dir, records };
}

t.test('a 500 is retried with backoff on the clock; then delivered', async (t) => {
  const s = scripted([500, 503, 201]);
  const { push, advance } = await openPush_(t, { transport: s.transport });
  const keys = newSubscriptionKeys();
  await push.register('phone-1', 'dev-1', { endpoint: EP, keys: keys.json });
  const r1 = nextEvent(push, 'retry');
  t.equal(await push.notice(['phone-1'], 7, 'notification', Buffer.from('mls-bytes')), 1);
  const e1 = await r1;
  t.match(e1, { status: 500, attempt: 1, inMs: 1000 });
  t.equal(s.sent.length, 1);
  advance(999);
  t.equal(s.sent.length, 1, 'not retried before the backoff');
  const r2 = nextEvent(push, 'retry');
  advance(1);
  t.match(await r2, { status: 503, attempt: 2, inMs: 2000 }, 'the delay doubles');
  const done = nextEvent(push, 'delivered');
  advance(2000);
  t.match(await done, { status: 201, attempt: 3, phoneId: 'phone-1' });
  t.equal(s.sent.length, 3);
  // each attempt is a fresh RFC 8291 encryption of the same plaintext
  const plain = s.sent.map((r) => decryptAes128gcm(r.body, keys).toString('utf8'));
  t.equal(new Set(plain).size, 1);
  t.same(JSON.parse(plain[0] as string), {
    v: 1,
    t: 'notice',
    seq: 7,
    group: 'notification',
    mls: Buffer.from('mls-bytes').toString('base64url'),
  });
  t.not(s.sent[0]?.body.toString('hex'), s.sent[1]?.body.toString('hex'));
});

t.test('retries stop after the last attempt; a 400 is not retried', async (t) => {
  const s = scripted([502]);
  const { push, advance } = await openPush_(t, { transport: s.transport });
  await push.register('phone-1', 'dev-1', { endpoint: EP, keys: newSubscriptionKeys().json });
  const failed = nextEvent(push, 'failed');
  const attempted = () =>
    new Promise<void>((resolve) => {
      const off = push.onEvent((e) => {
        if (e.type === 'retry' || e.type === 'failed') {
          off();
          resolve();
        }
      });
    });
  let next = attempted();
  await push.notice(['phone-1'], 1, 'notification', Buffer.from('x'));
  for (let i = 0; i < 4; i++) {
    await next;
    next = attempted();
    advance(8000);
  }
  t.match(await failed, { status: 502, attempt: 4 });
  t.equal(s.sent.length, 4);
  advance(60_000);
  t.equal(s.sent.length, 4, 'nothing after the last attempt');

  const bad = scripted([400]);
  const b = await openPush_(t, { transport: bad.transport });
  await b.push.register('phone-2', 'dev-1', { endpoint: EP, keys: newSubscriptionKeys().json });
  const f2 = nextEvent(b.push, 'failed');
  await b.push.notice(['phone-2'], 1, 'notification', Buffer.from('x'));
  t.match(await f2, { status: 400, attempt: 1 });
  b.advance(60_000);
  t.equal(bad.sent.length, 1, 'a 400 is final');
});

t.test('a 410 or 404 endpoint is dropped and never tried again', async (t) => {
  for (const status of [410, 404]) {
    const s = scripted([status]);
    const { push, advance, dir } = await openPush_(t, { transport: s.transport });
    await push.register('phone-1', 'dev-1', { endpoint: EP, keys: newSubscriptionKeys().json });
    const file = join(dir, 'records', PUSH_NS.endpoints, 'phone-1.json');
    t.ok(await stat(file), 'the endpoint is in the record store');
    const dropped = nextEvent(push, 'dropped');
    await push.notice(['phone-1'], 1, 'notification', Buffer.from('x'));
    t.match(await dropped, { status, phoneId: 'phone-1' });
    t.same(push.list('phone-1'), []);
    await t.rejects(stat(file), { code: 'ENOENT' }, 'and off the disk');
    t.equal(await push.notice(['phone-1'], 2, 'notification', Buffer.from('y')), 0);
    advance(600_000);
    t.equal(s.sent.length, 1, `${status}: one request only`);
  }
});

t.test('endpoints and the VAPID key survive a restart; cap per phone', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-push-');
  t.teardown(cleanup);
  const o = {
    records: new FsRecordStore(join(dir, 'records'), new DurableFs()),
    logger: new MemoryLogger('push'),
    maxEndpointsPerPhone: 2,
  };
  const a = await RelayPush.open(o);
  const key = a.vapidPublicKey;
  t.equal(Buffer.from(key, 'base64url').length, 65);
  t.equal(
    (await stat(join(dir, 'records', PUSH_NS.vapid))).mode & 0o777,
    0o700,
    'the private key is in an owner-only directory',
  );
  const k = newSubscriptionKeys().json;
  t.match(await a.register('phone-p1', 'dev-d1', { endpoint: EP, keys: k }), { created: true });
  t.match(await a.register('phone-p1', 'dev-d1', { endpoint: EP, keys: k }), { created: false });
  await a.register('phone-p1', 'dev-d1', { endpoint: `${EP}2`, keys: k });
  await t.rejects(a.register('phone-p1', 'dev-d1', { endpoint: `${EP}3`, keys: k }), {
    code: 'EFULL',
    message: 'this phone has 2 push endpoints already; remove one first',
  });
  await a.close();
  const b = await RelayPush.open(o);
  t.teardown(() => b.close());
  t.equal(b.vapidPublicKey, key, 'generated once');
  t.equal(b.list('phone-p1').length, 2);
  t.same(
    b.list('phone-p1').map((e) => e.origin),
    ['https://push.example', 'https://push.example'],
  );
  await b.forgetPhone('phone-p1');
  t.equal(b.endpointCount('phone-p1'), 0);
  t.same(await o.records.loadAll(PUSH_NS.endpoints), [], 'and out of the store');
  const [vapid] = await o.records.loadAll(PUSH_NS.vapid);
  t.match(vapid?.doc, { publicKey: key, privateKey: /^[A-Za-z0-9_-]{43}$/ });
});

t.test('push state of an earlier relay (files) moves into the record store', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-push-');
  t.teardown(cleanup);
  const legacy = join(dir, 'push');
  await mkdir(join(legacy, 'endpoints'), { recursive: true });
  const vapid = { v: 1, publicKey: 'B'.repeat(87), privateKey: 'p'.repeat(43) };
  await writeFile(join(legacy, 'vapid.json'), JSON.stringify(vapid));
  const k = newSubscriptionKeys().json;
  const phone = {
    v: 1,
    phoneId: 'phone-old',
    deviceId: 'dev-old',
    endpoints: [{ id: 'i'.repeat(22), endpoint: EP, p256dh: k.p256dh, auth: k.auth, createdAt: 5 }],
  };
  await writeFile(join(legacy, 'endpoints', 'phone-old.json'), JSON.stringify(phone));
  const records = new FsRecordStore(join(dir, 'records'), new DurableFs());
  const fs = new DurableFs();
  const o = { records, legacyDir: legacy, fs, logger: new MemoryLogger('push') };
  const p = await RelayPush.open(o);
  t.equal(p.vapidPublicKey, vapid.publicKey, 'the VAPID key is kept (subscriptions stay valid)');
  t.same(p.list('phone-old'), [
    { id: 'i'.repeat(22), origin: 'https://push.example', createdAt: 5 },
  ]);
  await p.close();
  await t.rejects(stat(join(legacy, 'vapid.json')), { code: 'ENOENT' }, 'the old files go');
  await t.rejects(stat(join(legacy, 'endpoints', 'phone-old.json')), { code: 'ENOENT' });
  const again = await RelayPush.open(o);
  t.teardown(() => again.close());
  t.equal(again.vapidPublicKey, vapid.publicKey, 'a second start finds it in the store');
  t.equal(again.endpointCount('phone-old'), 1);
});

t.test(
  '"unseen since": once per outage after the threshold, labelled relay-reported',
  async (t) => {
    const s = scripted([201]);
    const { push, advance, records } = await openPush_(t, {
      transport: s.transport,
      unseenAfterMs: 60_000,
    });
    const keys = newSubscriptionKeys();
    await push.register('phone-1', 'dev-1', { endpoint: EP, keys: keys.json });
    const events: PushEvent[] = [];
    push.onEvent((e) => events.push(e));
    advance(10_000);
    push.seen('dev-1'); // a hub request at t = 10 s
    advance(59_999);
    t.same(
      events.filter((e) => e.type === 'unseen'),
      [],
      'nothing before the threshold',
    );
    const first = nextEvent(push, 'delivered');
    const unseen = nextEvent(push, 'unseen');
    advance(1);
    t.match(await unseen, { deviceId: 'dev-1', since: 10_000, endpoints: 1 });
    await first;
    t.match(
      (await records.loadAll(PUSH_NS.seen))[0]?.doc,
      { v: 1, deviceId: 'dev-1', seenAt: 10_000, announcedAt: 70_000 },
      'the sighting and the announcement are in the store: no other relay process (or a restart) repeats it',
    );
    advance(10 * 60_000);
    t.equal(events.filter((e) => e.type === 'unseen').length, 1, 'once per outage');
    t.equal(s.sent.length, 1);

    const plain = decryptAes128gcm(s.sent[0]!.body, keys);
    const d = decodePushMessage(plain);
    t.same(d.ok && d.value, { v: 1, t: 'unseen', deviceId: 'dev-1', since: 10_000, at: 70_000 });
    const opened = await openPush(plain, {
      receive: () => Promise.reject(new Error('an unseen notice must not reach MLS')),
      deviceId: 'dev-1',
    });
    t.equal(opened.source, 'relay');
    t.equal(opened.trusted, false);
    t.match(
      opened.body,
      /^relay-reported \(not verified by the hub\): the hub has not been seen since 1970-01-01T00:00:10\.000Z$/,
    );
    await t.rejects(
      openPush(plain, { receive: () => Promise.reject(new Error('x')), deviceId: 'dev-2' }),
      {
        code: 'EPUSH',
      },
    );

    // the hub comes back, then goes quiet again: a new outage, a new notice
    push.seen('dev-1');
    const second = nextEvent(push, 'unseen');
    advance(60_000);
    t.match(await second, { deviceId: 'dev-1' });
    t.equal(events.filter((e) => e.type === 'unseen').length, 2);
  },
);

t.test('"unseen" is off at 0 and silent for hubs without endpoints', async (t) => {
  const s = scripted([201]);
  const off = await openPush_(t, { transport: s.transport, unseenAfterMs: 0 });
  await off.push.register('p', 'd', { endpoint: EP, keys: newSubscriptionKeys().json });
  off.push.seen('d');
  off.advance(10 * 3600_000);
  const on = await openPush_(t, { transport: s.transport, unseenAfterMs: 1000 });
  on.push.seen('lonely');
  on.advance(3600_000);
  t.equal(s.sent.length, 0);
});

t.test('endpoint URLs: https only, http only to loopback when allowed', (t) => {
  const msg = (u: string, allow: boolean): string => {
    try {
      checkEndpointUrl(u, allow);
      return 'ok';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.equal(msg('https://fcm.googleapis.com/wp/abc', false), 'ok');
  t.equal(msg('http://127.0.0.1:9/x', true), 'ok');
  t.equal(msg('http://[::1]:9/x', true), 'ok');
  t.equal(msg('http://127.0.0.1:9/x', false), 'endpoint: must be an https URL');
  t.equal(
    msg('http://push.example/x', true),
    'endpoint: http is accepted only to a loopback address; use https',
  );
  t.equal(msg('ftp://push.example/x', true), 'endpoint: must be an https URL, not ftp:');
  t.equal(msg('https://u:p@push.example/x', true), 'endpoint: must not carry credentials');
  t.equal(msg('https://push.example/x#f', true), 'endpoint: must not have a fragment');
  t.equal(msg('not a url', true), 'endpoint: not a URL');
  t.end();
});

t.test('push routes: registration validated strictly, one-line specific errors', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { relay, device, phones } = await relayWith(dir, 2, { push: { allowLoopbackHttp: false } });
  t.teardown(() => relay.close());
  const [ph, other] = phones as [(typeof phones)[0], (typeof phones)[0]];
  const keys = newSubscriptionKeys().json;
  const put = (body: unknown, token = ph.token) =>
    raw(relay.url, 'PUT', '/v1/push/endpoints', {
      token,
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
    });
  const cases: [unknown, number, string][] = [
    [{ endpoint: 'http://127.0.0.1/x', keys }, 400, 'endpoint: must be an https URL'],
    [
      {
        endpoint: 'https://p.example/x',
        keys: {
          ...keys,
          p256dh: Buffer.from(keys.p256dh, 'base64url').subarray(0, 64).toString('base64url'),
        },
      },
      400,
      'keys.p256dh: p256dh must be 65 bytes, got 64',
    ],
    [
      {
        endpoint: 'https://p.example/x',
        keys: { ...keys, p256dh: Buffer.alloc(65, 4).toString('base64url') },
      },
      400,
      'keys.p256dh: p256dh is not an uncompressed P-256 point',
    ],
    [
      { endpoint: 'https://p.example/x', keys: { ...keys, auth: 'AAAA' } },
      400,
      'keys.auth: auth must be 16 bytes, got 3',
    ],
    [
      { endpoint: 'https://p.example/x', keys: { ...keys, auth: 'no+base64/url!' } },
      400,
      'keys.auth: auth is not base64url',
    ],
    [
      { endpoint: `https://p.example/${'a'.repeat(1100)}`, keys },
      400,
      'endpoint: endpoint longer than 1024 characters',
    ],
    [{ endpoint: 'https://p.example/x', keys, extra: 1 }, 400, 'Unrecognized key: "extra"'],
  ];
  for (const [body, status, message] of cases) {
    const r = await put(body);
    t.equal(r.status, status, message);
    const m = (r.body as { message: string }).message;
    t.equal(m, message);
    t.notOk(m.includes('\n'), 'one line');
  }
  t.match(await put({ endpoint: 'https://p.example/x', keys }, device.token), {
    status: 403,
    body: { error: 'EFORBIDDEN', message: 'push endpoints are registered by phones' },
  });
  t.match(await put({ endpoint: 'https://p.example/x', keys }, 'p.nobody.secret'), { status: 401 });
  t.equal(
    (await raw(relay.url, 'PUT', '/v1/push/endpoints', { token: ph.token, body: '{}' })).status,
    415,
  );
  t.same(await ph.client.pushEndpoints(), [], 'nothing was registered by the bad requests');

  // the happy path through the typed client
  t.equal(await new RelayClient({ url: relay.url }).pushVapidKey(), relay.push?.vapidPublicKey);
  const reg = await ph.client.registerPush({ endpoint: 'https://p.example/x', keys });
  t.match(reg, { created: true });
  t.same(
    (await ph.client.pushEndpoints()).map((e) => e.id),
    [reg.id],
  );
  t.same(
    await other.client.pushEndpoints(),
    [],
    "another phone does not see this phone's endpoints",
  );
  t.match(await raw(relay.url, 'DELETE', `/v1/push/endpoints/${reg.id}`, { token: other.token }), {
    status: 404,
    body: { message: 'no such push endpoint for this phone' },
  });
  t.match(await raw(relay.url, 'DELETE', '/v1/push/endpoints/bad', { token: ph.token }), {
    status: 400,
    body: { message: 'endpoint ids are 22 base64url characters' },
  });
  t.match(await raw(relay.url, 'GET', '/v1/push/nothing', {}), { status: 404 });
  // removing the phone's account removes its endpoints
  await device.client.removePhone(ph.id);
  t.equal(relay.push?.endpointCount(ph.id), 0);

  const { dir: d2, cleanup: c2 } = await tempDir();
  t.teardown(c2);
  const off = await relayWith(d2, 0, { push: false });
  t.teardown(() => off.relay.close());
  t.match(await raw(off.relay.url, 'GET', '/v1/push/vapid', {}), {
    status: 501,
    body: { error: 'ENOPUSH', message: 'this relay does not send push notifications' },
  });
});

t.test('a VAPID header the test verifies independently', async (t) => {
  const s = scripted([201]);
  const { push } = await openPush_(t, {
    transport: s.transport,
    subject: 'mailto:ops@example.org',
  });
  await push.register('p', 'd', { endpoint: EP, keys: newSubscriptionKeys().json });
  const done = nextEvent(push, 'delivered');
  await push.notice(['p'], 3, 'notification', Buffer.from('z'));
  await done;
  const h = s.sent[0]!.headers;
  const v = verifyVapid(h.authorization);
  t.equal(v.key, push.vapidPublicKey);
  t.equal(v.claims.aud, 'https://push.example');
  t.equal(v.claims.sub, 'mailto:ops@example.org');
  t.ok(v.claims.exp > Date.now() / 1000 && v.claims.exp <= Date.now() / 1000 + 24 * 3600);
  t.equal(h['content-encoding'], 'aes128gcm');
  t.equal(h.urgency, 'high');
  t.equal(h.ttl, '86400');
  t.ok(s.sent[0]!.body.length < 4096);
});
