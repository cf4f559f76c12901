// Journey 3 on the real composition (dev/local-run.ts: relay, supervisor-run
// hub with the media pipeline on the simulated camera, companion, viewer):
// a push endpoint registered through the viewer (as its page does with the
// browser's PushSubscription) receives, for a motion event, an RFC 8291
// aes128gcm Web Push from the local run's relay — a local RFC 8030 push
// service here. The body is decrypted by an independent implementation
// (test/fixtures/web-push.ts) with the subscription's keys, the VAPID JWT is
// checked against the relay's key, and the plaintext, handed to the viewer as
// the service worker does, opens with MLS to the motion notice naming the clip
// the viewer stores — although the companion read the same notice from its
// mailbox first (the usual order while it runs; MLS opens a message once).
// Then the hub stops and the relay's own "unseen since" push arrives, which
// the viewer labels relay-reported (journey 4's fast path).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { startLocalRun } from '../../dev/local-run.js';
import { SMALL_IDLE, nextStored } from '../fixtures/local-run.js';
import type { NoticeMessage } from '../../protocol/e2ee-frames.js';
import { decodePushMessage } from '../../protocol/push.js';
import {
  decryptAes128gcm,
  newSubscriptionKeys,
  startPushService,
  verifyVapid,
} from '../fixtures/web-push.js';

// the simulated camera and x264 are slow on a loaded machine: every wait is for an event
t.setTimeout(600_000);

t.test('local run: motion -> sealed notice -> relay Web Push -> viewer opens it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-push-local-'));
  const service = await startPushService();
  const lr = await startLocalRun({
    dir,
    logger: new MemoryLogger('dev'),
    // no scheduled motion: the test triggers one once the endpoint is registered
    ...SMALL_IDLE,
    // the relay's fast offline push: a hub unseen for 3 s (its long-polls stop)
    unseenAfterMs: 3000,
  });
  t.teardown(async () => {
    await lr.stop();
    await service.close();
    await rm(dir, { recursive: true, force: true });
  });
  const viewer = new URL(lr.viewerUrl);
  const token = viewer.searchParams.get('t') ?? '';
  const api = (path: string): string => `${viewer.origin}${path}?t=${token}`;

  // what the page does: the relay's VAPID key, then the subscription registered through the viewer
  const cfg = (await (await fetch(api('/api/push/config'))).json()) as { vapidKey: string };
  t.match(cfg.vapidKey, /^[A-Za-z0-9_-]{80,}$/, 'the viewer hands out the relay VAPID key');
  const keys = newSubscriptionKeys();
  const reg = await fetch(api('/api/push/subscription'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ endpoint: service.endpoint('/phone', [201]), keys: keys.json }),
  });
  t.equal(reg.status, 200, 'endpoint registered at the relay through the viewer');

  const mailboxNotice = new Promise<NoticeMessage>((resolve) => {
    const off = lr.crypto.onNotice((n) => {
      off();
      resolve(n);
    });
  });
  lr.media()?.trigger(3000);

  const req = await service.next('/phone');
  t.equal(req.headers['content-encoding'], 'aes128gcm', 'RFC 8291 payload encryption');
  t.ok(req.body.length < 4096, `push body ${req.body.length} bytes, under 4 KiB`);
  const vapid = verifyVapid(req.headers.authorization as string);
  t.equal(vapid.key, cfg.vapidKey, 'VAPID JWT signed with the key the relay publishes');
  t.equal(vapid.claims.aud, service.url, 'audience: the push service origin');
  const plain = decryptAes128gcm(req.body, keys);
  const msg = decodePushMessage(plain);
  t.ok(msg.ok && msg.value.t === 'notice', 'an MLS notice inside (the push service saw RFC 8291)');
  t.notOk(plain.includes(Buffer.from('motion detected')), 'the relay pushed MLS ciphertext only');

  // the companion reads the notification group too: wait until it has, then open the push
  const n = await mailboxNotice;
  t.equal(n.kind, 'motion', 'the companion read the sealed notice from its mailbox');
  const opened = await fetch(api('/api/push/open'), {
    method: 'POST',
    body: new Uint8Array(plain),
  });
  t.equal(opened.status, 200, 'the viewer opened the push');
  const shown = (await opened.json()) as {
    title: string;
    trusted: boolean;
    source: string;
    itemId?: string;
    cover: boolean;
  };
  t.match(
    shown,
    { title: 'Vigil: motion', trusted: true, source: 'hub', itemId: n.itemId, cover: false },
    'opened with MLS: the hub motion notice, naming its clip',
  );
  t.equal(lr.notices.since(0).notices.length, 1, 'one notice in the feed (mailbox and push)');

  // a push whose bytes were not sealed for this phone is refused with one line
  const forged = new Uint8Array(plain);
  forged[forged.length - 5] = (forged[forged.length - 5] ?? 0) ^ 1;
  const bad = await fetch(api('/api/push/open'), { method: 'POST', body: forged });
  t.equal(bad.status, 422, 'a tampered push is refused');

  // the clip it names arrives in the store
  const clip = await nextStored(lr, (it) => it.summary.itemId === n.itemId).then(
    (c) => c.summary.itemId,
  );
  t.equal(clip, n.itemId, 'the notice names a clip the viewer stores');

  // journey 4, the fast path: the hub stops; the relay, which no longer sees its requests,
  // pushes its own "unseen since" notice; the viewer labels it relay-reported
  await lr.stopHub();
  const stopped = Date.now();
  const unseen = await service.next('/phone');
  t.ok(unseen.body.length < 4096, 'the unseen push is under 4 KiB too');
  const unseenPlain = decryptAes128gcm(unseen.body, keys);
  t.match(decodePushMessage(unseenPlain), { ok: true, value: { t: 'unseen' } });
  t.comment(`relay-reported push ${((Date.now() - stopped) / 1000).toFixed(1)} s after the stop`);
  const u = await fetch(api('/api/push/open'), {
    method: 'POST',
    body: new Uint8Array(unseenPlain),
  });
  const said = (await u.json()) as Record<string, unknown>;
  t.notOk('itemId' in said, 'it names no clip');
  t.match(
    said,
    {
      title: 'Vigil: hub not seen (relay-reported)',
      body: /^relay-reported \(not verified by the hub\): the hub has not been seen since /,
      trusted: false,
      source: 'relay',
    },
    'the viewer labels it relay-reported (the relay is untrusted)',
  );
  t.notOk(
    unseen.body.includes(Buffer.from('unseen')),
    'the push service sees RFC 8291 ciphertext only',
  );
  await lr.startHub();
});
