import t from 'tap';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../../hw/os/fs.js';
import { MemoryLogger, SILENT } from '../../../base/logger.js';
import { createUplink } from '../../../firmware/uplink/uplink.js';
import { StaticKeyCrypto } from '../../../app/crypto.js';
import { ItemStore } from '../../../app/store.js';
import { Syncer } from '../../../app/sync.js';
import { eventsOf, startViewer } from '../../../app/viewer/server.js';
import { HubLink } from '../../../app/hub-link.js';
import { LIVE_REFUSED_TOPIC, encodeControl } from '../../../protocol/live-control.js';
import { RelayClient } from '../../../protocol/relay-client.js';
import { encodePushMessage } from '../../../protocol/push.js';
import { NoticeFeed } from '../../../app/push.js';
import { relayWith, tempDir } from '../../relay/fixtures.js';
import { launchChromium, splitFmp4 } from '../../../dev/fixtures/browser.js';
import { H264_CODEC, StaticKeySealer, makeClip, makeJpeg, sealWhole } from '../fixtures.js';

t.test(
  'viewer in headless Chromium: lists events with thumbnails, plays a clip, shows live',
  async (t) => {
    const { dir, cleanup } = await tempDir('vigil-viewer-');
    const { relay, device, phones } = await relayWith(`${dir}/relay`, 1);
    const uplink = await createUplink({
      relayUrl: relay.url,
      credentials: { deviceId: device.id, token: device.token },
      stateDir: `${dir}/q`,
      fs: new DurableFs(),
      logger: SILENT,
    });
    uplink.start();
    const closers: (() => Promise<void>)[] = [() => uplink.stop(), () => relay.close(), cleanup];
    t.teardown(async () => {
      for (const c of closers) await c();
    });
    const key = randomBytes(32);
    const sealer = new StaticKeySealer(key, uplink);
    const clip = await makeClip(3);
    const jpeg = await makeJpeg();
    const startedAt = Date.UTC(2026, 10, 22, 12, 0, 0);
    await sealWhole(sealer, { kind: 'thumbnail', startedAt, codec: 'image/jpeg' }, jpeg, 1, 0);
    await sealWhole(sealer, { kind: 'clip', startedAt, codec: H264_CODEC }, clip, 5, 3000);
    await uplink.drained();

    const crypto = new StaticKeyCrypto(key);
    const store = new ItemStore(`${dir}/app`, new DurableFs());
    const client = phones[0]!.client;
    const sync = await new Syncer({ client, crypto, store, logger: SILENT }).syncOnce();
    t.equal(sync.stored.length, 2, 'both items stored locally');
    t.equal((await client.list({})).items.length, 0, 'and acknowledged on the relay');
    t.equal(relay.core.stats().storedBytes, 0, 'the relay deleted them');
    const logger = new MemoryLogger('viewer');
    const viewer = await startViewer({ store, crypto, client, logger });
    closers.unshift(() => viewer.close());
    const { browser, close } = await launchChromium();
    closers.unshift(close);

    // plain HTTP checks: the access token and the Host header are enforced
    const base = viewer.url.replace(/\/\?t=.*$/, '');
    t.equal((await fetch(`${base}/api/events`)).status, 401, 'no token, no access');
    t.equal(
      (
        await fetch(`${base}/api/events`, {
          headers: { cookie: `vigil_viewer_${viewer.port}=wrong` },
        })
      ).status,
      401,
    );
    const tok = new URL(viewer.url).searchParams.get('t')!;
    const events = eventsOf(await store.list());
    t.equal(events.length, 1);
    t.equal(events[0]?.thumbnail, sync.stored[0]?.seq, 'thumbnail matched to its clip');
    const ranged = await fetch(`${base}/api/items/${events[0]!.seq}/media?t=${tok}`, {
      headers: { range: 'bytes=0-99' },
    });
    t.equal(ranged.status, 206);
    t.same(
      Buffer.from(await ranged.arrayBuffer()),
      clip.subarray(0, 100),
      'decrypted bytes are the clip',
    );

    const page = await browser.newPage();
    await page.goto(viewer.url);
    await page.waitForSelector('li.event');
    t.equal(await page.locator('li.event').count(), 1, 'the page lists the event');
    await page.waitForFunction(() => {
      const img = document.querySelector('li.event img');
      return img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
    });
    t.pass('the thumbnail is shown');
    await page.click('li.event');
    await page.waitForFunction(
      () => {
        const v = document.getElementById('video');
        return v instanceof HTMLVideoElement && v.currentTime > 0.5;
      },
      undefined,
      { timeout: 120_000 },
    );
    const played = await page.evaluate(
      () => (document.getElementById('video') as HTMLVideoElement).currentTime,
    );
    t.ok(played > 0.5, `the clip plays (currentTime ${played.toFixed(2)} s)`);

    // live: a live item streamed fragment by fragment, shown through Media Source Extensions
    const liveClip = await makeClip(6);
    const parts = splitFmp4(liveClip);
    t.ok(parts.length > 3, 'live source has an init segment and fragments');
    await page.click('#live-btn');
    const w = await sealer.begin({ kind: 'live', startedAt: Date.now(), codec: H264_CODEC });
    // every fragment but the last: the item stays open (live) until the page has played
    let sent = 0;
    for (const p of parts.slice(0, -1)) {
      await w.write(p);
      sent++;
    }
    await page.waitForFunction(
      () => {
        const v = document.getElementById('video');
        return (
          document.body.dataset.live === 'on' &&
          v instanceof HTMLVideoElement &&
          v.currentTime > 0.3
        );
      },
      undefined,
      { timeout: 120_000 },
    );
    // the wait above is the check: the last fragment and the end record are not sent yet
    t.pass(`live video advanced in the page with the item still open (${sent} fragments sent)`);
    await w.write(parts.at(-1) ?? Buffer.alloc(0));
    await w.close(6000);
    t.notOk(
      logger.lines.some((l) => l.includes('"level":"error"')),
      'viewer logged no errors',
    );
  },
);

t.test(
  'with a hub link: /api/live asks the hub first; refusal 409, silence 504; /api/status',
  async (t) => {
    const { dir, cleanup } = await tempDir('vigil-viewer-link-');
    const { relay, phones } = await relayWith(`${dir}/relay`, 1);
    const handlers = new Map<string, (b: Uint8Array) => Promise<string>>();
    let answer: 'refuse' | 'silent' = 'refuse';
    const asked: string[] = [];
    const link = new HubLink({
      onApp: (topic, h) => {
        handlers.set(topic, h);
      },
      seal: (m) => Promise.resolve(Buffer.from(m.t === 'app' ? m.topic : m.t)),
      postUp: async (b) => {
        asked.push(Buffer.from(b).toString());
        if (answer === 'refuse')
          await handlers.get(LIVE_REFUSED_TOPIC)?.(
            encodeControl(LIVE_REFUSED_TOPIC, { v: 1, reason: 'storage-locked' }),
          );
      },
      offlineAfterMs: 3_600_000,
    });
    const viewer = await startViewer({
      store: new ItemStore(`${dir}/app`, new DurableFs()),
      crypto: new StaticKeyCrypto(randomBytes(32)),
      client: new RelayClient({ url: relay.url, token: phones[0]!.token }),
      link,
      liveAnswerMs: 200,
      logger: SILENT,
    });
    t.teardown(async () => {
      link.close();
      await viewer.close();
      await relay.close();
      await cleanup();
    });
    const tok = new URL(viewer.url).searchParams.get('t')!;
    const base = viewer.url.replace(/\/\?t=.*$/, '');
    const refused = await fetch(`${base}/api/live?t=${tok}`);
    t.equal(refused.status, 409);
    t.same(await refused.json(), {
      reason: 'storage-locked',
      message: "live view refused: the hub's storage is locked",
    });
    t.same(asked, ['live-request'], 'the request went up the config group');
    answer = 'silent';
    const silent = await fetch(`${base}/api/live?t=${tok}`);
    t.equal(silent.status, 504);
    t.match(((await silent.json()) as { message: string }).message, /no answer from the hub/);
    const status = (await (await fetch(`${base}/api/status?t=${tok}`)).json()) as {
      hub: { offline: boolean; lastSeenAt: number | null };
    };
    t.equal(status.hub.offline, false);
    t.equal(status.hub.lastSeenAt, null);
  },
);

t.test(
  '/api/push/open: a hub notice opens with MLS and names its clip; "unseen" does not',
  async (t) => {
    const { dir, cleanup } = await tempDir('vigil-viewer-push-');
    const feed = new NoticeFeed();
    const itemId = 'ab'.repeat(16);
    const opened: string[] = [];
    const viewer = await startViewer({
      store: new ItemStore(`${dir}/app`, new DurableFs()),
      crypto: new StaticKeyCrypto(randomBytes(32)),
      logger: SILENT,
      notices: {
        feed,
        deviceId: 'dev-1',
        // stands in for MLS: the push carries these bytes, "opened" into a motion notice
        receive: (b) => {
          opened.push(Buffer.from(b).toString());
          return Promise.resolve({
            kind: 'notice',
            notice: { t: 'notice', at: 1_000, kind: 'motion', itemId, text: 'motion detected' },
          });
        },
      },
    });
    t.teardown(async () => {
      await viewer.close();
      await cleanup();
    });
    const tok = new URL(viewer.url).searchParams.get('t')!;
    const base = viewer.url.replace(/\/\?t=.*$/, '');
    const post = async (m: Parameters<typeof encodePushMessage>[0]) => {
      const r = await fetch(`${base}/api/push/open?t=${tok}`, {
        method: 'POST',
        body: encodePushMessage(m) as unknown as BodyInit,
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const notice = await post({
      v: 1,
      t: 'notice',
      seq: 4,
      group: 'notification',
      mls: Buffer.from('sealed').toString('base64url'),
    });
    t.same(opened, ['sealed'], 'the MLS bytes went to the phone');
    t.match(notice, {
      status: 200,
      body: { title: 'Vigil: motion', trusted: true, source: 'hub', itemId },
    });
    t.match(feed.since(0).notices[0]?.notice, { itemId }, 'and into the page feed');
    const unseen = await post({ v: 1, t: 'unseen', deviceId: 'dev-1', since: 5, at: 9 });
    t.equal(unseen.status, 200);
    t.equal(unseen.body.trusted, false);
    t.notOk('itemId' in unseen.body, 'the relay-reported notice names no clip');
  },
);
