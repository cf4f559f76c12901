// Journey 2, encrypted push end to end: the hub seals a motion notice in the
// notification group (MLS) and posts it to the real relay; the relay pushes it
// (RFC 8030 + RFC 8291 aes128gcm + RFC 8292 VAPID, web-push library) to the
// phone's endpoint, a local push service in this test. The body received there
// is decrypted by an independent RFC 8291 implementation (test/fixtures/web-push.ts,
// node:crypto only) with the subscription's private keys, the VAPID JWT is
// verified with the relay's public key, and the phone opens the notice with MLS.
// A 410 endpoint is dropped and not tried again; a 500 one is retried.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { DurableFs } from '../../hw/os/fs.js';
import { E2eeCrypto } from '../../app/e2ee-crypto.js';
import { openPush } from '../../app/push.js';
import { pairedOverRelay } from '../../dev/fixtures/paired-hub.js';
import { RelayConfigChannel } from '../../firmware/mls/config-channel.js';
import { decodePushMessage } from '../../protocol/push.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { startRelay } from '../../relay/server.js';
import type { PushEvent } from '../../relay/push.js';
import {
  decryptAes128gcm,
  newSubscriptionKeys,
  startPushService,
  verifyVapid,
} from '../fixtures/web-push.js';

t.test('motion notice: hub -> relay -> RFC 8030 endpoint -> phone (MLS)', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-push-e2e-'));
  const fs = new DurableFs();
  const service = await startPushService();
  const relay = await startRelay({
    dataDir: join(root, 'relay'),
    logger: new MemoryLogger('relay'),
    // the backoff is injected small: the test waits for the retry event, not for time
    push: { allowLoopbackHttp: true, retry: { initialMs: 5, maxMs: 20, attempts: 4 } },
  });
  t.teardown(async () => {
    await relay.close();
    await service.close();
    await rm(root, { recursive: true, force: true });
  });
  const push = relay.push!;
  const events: PushEvent[] = [];
  push.onEvent((e) => events.push(e));
  const until = (pred: (e: PushEvent) => boolean): Promise<PushEvent> =>
    new Promise((resolve) => {
      const hit = events.find(pred);
      if (hit) {
        resolve(hit);
        return;
      }
      const off = push.onEvent((e) => {
        if (!pred(e)) return;
        off();
        resolve(e);
      });
    });

  const { hub, phone, accounts } = await pairedOverRelay({ root, relayUrl: relay.url, fs });
  const crypto = new E2eeCrypto(phone!);
  const phoneClient = new RelayClient({ url: relay.url, token: accounts.phone.token });

  // the phone subscribes: three endpoints (good, gone, flaky)
  const vapidKey = await phoneClient.pushVapidKey();
  const keys = newSubscriptionKeys();
  const good = await phoneClient.registerPush({
    endpoint: service.endpoint('/good', [201]),
    keys: keys.json,
  });
  const gone = await phoneClient.registerPush({
    endpoint: service.endpoint('/gone', [410]),
    keys: newSubscriptionKeys().json,
  });
  const flakyKeys = newSubscriptionKeys();
  const flaky = await phoneClient.registerPush({
    endpoint: service.endpoint('/flaky', [500, 201]),
    keys: flakyKeys.json,
  });

  // the hub: a motion notice through its config channel (notification group)
  const channel = new RelayConfigChannel({
    hub,
    client: new RelayClient({ url: relay.url, token: accounts.device.token }),
    logger: new MemoryLogger('hub'),
  });
  const itemId = 'a1b2c3d4e5f60718';
  const at = 1_790_000_000_000;
  await channel.sendNotice({ at, kind: 'motion', itemId, text: 'motion detected' });

  const req = await service.next('/good');
  t.equal(req.headers['content-encoding'], 'aes128gcm');
  t.ok(req.body.length < 4096, `push body ${req.body.length} bytes, under 4 KiB`);
  const v = verifyVapid(req.headers.authorization as string);
  t.equal(v.key, vapidKey, 'VAPID JWT signed by the key the relay publishes');
  t.equal(v.claims.aud, service.url, 'audience: the push service origin');

  const plain = decryptAes128gcm(req.body, keys);
  const msg = decodePushMessage(plain);
  t.ok(msg.ok && msg.value.t === 'notice', 'an MLS notice inside');
  // what the push service and the relay saw is ciphertext only
  t.notOk(plain.includes(Buffer.from('motion detected')), 'the relay pushed MLS ciphertext');
  t.notOk(
    req.body.includes(Buffer.from('notification')),
    'the push service sees RFC 8291 ciphertext',
  );

  const opened = await openPush(plain, {
    receive: (b) => crypto.receiveInbound(b),
    deviceId: accounts.phone.deviceId,
    ack: (seq) => phoneClient.ack(seq),
  });
  t.equal(opened.source, 'hub');
  t.equal(opened.trusted, true);
  t.same(opened.notice, { t: 'notice', at, kind: 'motion', itemId, text: 'motion detected' });
  t.equal(opened.title, 'Vigil: motion');
  const { items } = await phoneClient.list({});
  t.notOk(
    items.some((i) => i.seq === opened.seq),
    'the notice was acknowledged on the relay once opened',
  );

  // the 410 endpoint is dropped, the 500 one retried and delivered
  t.match(await until((e) => e.type === 'dropped'), { endpointId: gone.id, status: 410 });
  t.match(await until((e) => e.type === 'retry'), { endpointId: flaky.id, status: 500 });
  t.match(await until((e) => e.type === 'delivered' && e.endpointId === flaky.id), {
    attempt: 2,
  });
  const flakyPlain = decryptAes128gcm((await service.next('/flaky')).body, flakyKeys);
  t.ok(flakyPlain.length > 0);
  t.same(
    (await phoneClient.pushEndpoints()).map((e) => e.id).sort(),
    [good.id, flaky.id].sort(),
    'the gone endpoint was removed',
  );

  // a second notice: the gone endpoint is not tried again
  await channel.sendNotice({ at: at + 1, kind: 'motion', text: 'motion detected' });
  await service.next('/good');
  await until((e) => e.type === 'delivered' && e.endpointId === flaky.id && e.attempt === 1);
  t.equal(
    service.requests.filter((r) => r.path === '/gone').length,
    1,
    'one request ever to the 410 endpoint',
  );
  // the same push opened twice is refused by MLS (no replay)
  await t.rejects(openPush(plain, { receive: (b) => crypto.receiveInbound(b) }), {
    code: 'EPUSH',
  });
  await channel.stop();
});
