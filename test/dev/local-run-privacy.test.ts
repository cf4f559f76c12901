// The local run (`vigil dev`) with the constant-rate privacy mode on (issue #20):
// the real composition — simulated camera, x264, MLS sealer, uplink, relay,
// companion sync — delivers a clip end to end although the relay only ever
// sees fixed-size `kind=message` records on a schedule; the motion notice
// arrives inside a notice record, not as a notice of its own, and the relay pushes
// every notice record — covers included — to the phone's endpoint at the same size;
// live view works with the mode on.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { openItem } from '../../app/crypto.js';
import { STREAM_SEQ_BASE } from '../../app/stream.js';
import type { NoticeMessage } from '../../protocol/e2ee-frames.js';
import { startLocalRun } from '../../dev/local-run.js';
import { SMALL_IDLE, nextStored } from '../fixtures/local-run.js';
import { MemoryLogger } from '../../base/logger.js';
import { privacySchema } from '../../firmware/uplink/privacy.js';
import { decryptAes128gcm, newSubscriptionKeys, startPushService } from '../fixtures/web-push.js';

t.setTimeout(600_000);

t.test(
  'local run, constant-rate mode: a clip and its notice arrive through stream records',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-local-privacy-'));
    const lr = await startLocalRun({
      dir,
      logger: new MemoryLogger('dev'),
      // no scheduled motion: the test triggers one once the push endpoint is registered
      ...SMALL_IDLE,
      preRollS: 1,
      postRollS: 1,
      privacy: privacySchema.parse({
        mode: 'constant-rate',
        constantRate: { recordKiB: 64, slotSeconds: 1, noticeSlotSeconds: 5 },
      }),
    });
    const service = await startPushService();
    t.teardown(async () => {
      await lr.stop();
      await service.close();
      await rm(dir, { recursive: true, force: true });
    });
    // a push endpoint, registered through the viewer as its page does
    const viewer = new URL(lr.viewerUrl);
    const api = (path: string): string =>
      `${viewer.origin}${path}?t=${viewer.searchParams.get('t') ?? ''}`;
    const keys = newSubscriptionKeys();
    const reg = await fetch(api('/api/push/subscription'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ endpoint: service.endpoint('/phone', [201]), keys: keys.json }),
    });
    t.equal(reg.status, 200, 'push endpoint registered');
    lr.media()?.trigger(3000);
    const notice = new Promise<NoticeMessage>((resolve) => {
      const off = lr.crypto.onNotice((n) => {
        off();
        resolve(n);
      });
    });
    // wait for the event: the companion's sync passes say what they stored
    const clip = await nextStored(lr, (it) => it.summary.kind === 'clip');
    t.ok(clip.seq >= STREAM_SEQ_BASE, 'the clip was reassembled from stream records');
    const stored = await lr.store.get(clip.seq);
    const opened = await openItem(lr.crypto, stored?.bytes ?? Buffer.alloc(0));
    t.equal(opened.summary.kind, 'clip');
    t.ok(opened.plaintext.length > 1000, `the clip decrypts (${opened.plaintext.length} bytes)`);
    const n = await notice;
    t.equal(n.kind, 'motion', 'the motion notice arrived in a notice record');
    const st = lr.uplink()?.status();
    t.ok((st?.privacy?.coverRecords ?? 0) > 0, 'cover records were sent too');
    t.ok((st?.sentSegments ?? 0) > 0, 'queue segments were consumed by the stream');

    // item 3: pushes ride the notice schedule — covers and the motion notice alike, one size,
    // under 4 KiB; the viewer (as the service worker asks it) tells covers from the real one
    const sizes = new Set<number>();
    let covers = 0;
    let motion: { itemId?: string } | undefined;
    while (covers === 0 || motion === undefined) {
      const req = await service.next('/phone');
      sizes.add(req.body.length);
      const plain = decryptAes128gcm(req.body, keys);
      const r = await fetch(api('/api/push/open'), { method: 'POST', body: new Uint8Array(plain) });
      t.equal(r.status, 200, 'the viewer opened a scheduled push');
      const o = (await r.json()) as { cover: boolean; title: string; itemId?: string };
      if (o.cover) covers += 1;
      else {
        t.equal(o.title, 'Vigil: motion');
        motion = o;
      }
    }
    t.equal(motion.itemId, clip.summary.itemId, 'the notice push names the clip');
    t.equal(sizes.size, 1, `every push the same size (${[...sizes].join(', ')} bytes)`);
    t.ok(
      [...sizes].every((n) => n < 4096),
      'under 4 KiB',
    );
    t.ok(covers > 0, 'cover pushes went out on the schedule and showed nothing');

    // live view still works with the mode on (the one thing that breaks the pattern)
    const ac = new AbortController();
    const live = await fetch(api('/api/live'), { signal: ac.signal });
    t.equal(live.status, 200, 'live view answers');
    const reader = live.body?.getReader();
    let got = Buffer.alloc(0);
    while (reader && !got.includes(Buffer.from('moof'))) {
      const { value, done } = await reader.read();
      if (done) break;
      got = Buffer.concat([got, Buffer.from(value)]);
    }
    t.ok(got.includes(Buffer.from('ftyp')), 'the live stream starts with its init segment');
    t.ok(got.includes(Buffer.from('moof')), 'and a media fragment follows');
    ac.abort();
    await reader?.cancel().catch(() => undefined);
  },
);
