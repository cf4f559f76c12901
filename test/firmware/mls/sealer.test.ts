import t from 'tap';
import { closeSync, openSync, readFileSync, rmSync, writeSync, writevSync } from 'node:fs';
import type { CiphertextSink } from '../../../firmware/items.js';
import type { E2eePhone } from '../../../app/e2ee/phone.js';
import { join } from 'node:path';
import { ContainerReader, parseHeader } from '../../../protocol/container.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import { MlsItemSealer } from '../../../firmware/mls/sealer.js';
import {
  DEVICE_ID,
  MemorySink,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../../../dev/fixtures/paired-hub.js';

const p = await loadMlsProfile();

void t.test('streams: header first, chunks as written, final on close', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const sink = new MemorySink();
  const sealer = sealerFor(hub, sink, 1000);
  await t.rejects(sealer.begin({ kind: 'clip', startedAt: 0, codec: 'video/mp4' }), {
    code: 'ENO_PHONES',
  });
  const { phone } = await pair({
    p,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
  });
  const w = await sealer.begin({
    kind: 'live',
    startedAt: 1_790_000_000_123,
    codec: 'video/mp4; codecs="avc1.64001f"',
  });
  t.match(w.itemId, /^[0-9a-f]{32}$/);
  t.equal(w.epoch, hub.epoch(phone!.phoneId, 'livestream'), 'writer reports the new epoch');
  const item = sink.items.get(w.itemId)!;
  t.equal(item.parts.length, 1, 'header emitted at begin');
  t.equal(item.final, false);
  const h = parseHeader(sink.bytes(w.itemId));
  t.ok(
    h.ok &&
      h.value.header.core.kind === 'live' &&
      h.value.header.core.startedAt === 1_790_000_000_123,
  );
  // a phone can start decrypting before the item ends
  const reader = phone!.openItem();
  await reader.push(sink.bytes(w.itemId));
  await w.write(Buffer.alloc(2500, 1));
  t.equal(item.parts.length, 4, '2500 bytes -> 3 chunks of <= 1000 leave at once');
  const ev = await reader.push(Buffer.concat(item.parts.slice(1)));
  t.equal(ev.filter((e) => e.type === 'chunk').length, 3, 'phone decrypts chunks while recording');
  await w.close(5000);
  t.equal(item.final, true);
  await reader.push(item.parts.at(-1)!);
  const opened = reader.finish();
  t.equal(opened.trailer.durationMs, 5000);
  t.equal(opened.plaintext.length, 2500);
  await t.rejects(w.write(Buffer.from('late')), { code: 'EITEM_ENDED' });
  await t.rejects(w.close(1), { code: 'EITEM_ENDED' });
  await w.abort('no-op after close');
  // abort
  const a = await sealer.begin({ kind: 'thumbnail', startedAt: 1, codec: 'image/jpeg' });
  await a.write(Buffer.from('partial'));
  await a.abort('camera unplugged');
  const r = new ContainerReader();
  const res = r.push(sink.bytes(a.itemId));
  t.ok(res.ok);
  const done = await phone!.decryptItem(sink.bytes(a.itemId));
  t.equal(done.trailer.status, 'aborted');
  t.equal(done.trailer.reason, 'camera unplugged');
  // a clip's detected objects travel sealed in its end record (issue #21)
  const c = await sealer.begin({ kind: 'clip', startedAt: 2, codec: 'video/mp4' });
  await c.write(Buffer.from('frames'));
  await c.close(1200, 'objects=person:0.82');
  const clip = await phone!.decryptItem(sink.bytes(c.itemId));
  t.equal(clip.trailer.status, 'complete');
  t.equal(clip.trailer.reason, 'objects=person:0.82');
  t.notOk(
    Buffer.from(sink.bytes(c.itemId)).includes(Buffer.from('person')),
    'not readable in the ciphertext',
  );
});

void t.test('a failing sink fails the item clearly', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'phone') });
  let fail = false;
  const sink = new MemorySink();
  const flaky = {
    append: (id: string, kind: 'clip' | 'thumbnail' | 'live', b: Uint8Array, f: boolean) =>
      fail ? Promise.reject(new Error('disk full')) : sink.append(id, kind, b, f),
  };
  const { MlsItemSealer } = await import('../../../firmware/mls/sealer.js');
  const s = new MlsItemSealer({ hub, sink: flaky, deviceId: 'dev' });
  const w = await s.begin({ kind: 'clip', startedAt: 0, codec: 'video/mp4' });
  fail = true;
  await t.rejects(w.write(Buffer.from('x')), /disk full/);
  await t.rejects(w.write(Buffer.from('y')), { code: 'EITEM_FAILED' });
});

void t.test('overlapping items: headers leave in epoch order, all decrypt', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const { phone } = await pair({
    p,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
  });
  const sink = new MemorySink();
  let n = 0;
  // a sink whose first append is slow, to tempt a reordering
  const slow = {
    append: async (id: string, kind: 'clip' | 'thumbnail' | 'live', b: Uint8Array, f: boolean) => {
      if (n++ === 0) await new Promise((r) => setTimeout(r, 300));
      await sink.append(id, kind, b, f);
    },
  };
  const { MlsItemSealer } = await import('../../../firmware/mls/sealer.js');
  const s = new MlsItemSealer({ hub, sink: slow, deviceId: 'dev' });
  const ws = await Promise.all([
    s.begin({ kind: 'clip', startedAt: 1, codec: 'video/mp4' }),
    s.begin({ kind: 'clip', startedAt: 2, codec: 'video/mp4' }),
    s.begin({ kind: 'thumbnail', startedAt: 3, codec: 'image/jpeg' }),
  ]);
  await Promise.all(
    ws.map(async (w, i) => {
      await w.write(Buffer.alloc(100, i));
      await w.close(1);
    }),
  );
  const clips = sink.order.filter((id) => sink.items.get(id)?.kind === 'clip');
  const epochs = clips.map((id) => ws.find((w) => w.itemId === id)!.epoch);
  t.ok(epochs[0]! < epochs[1]!, 'clip headers in epoch order');
  for (const id of sink.order)
    t.equal((await phone!.decryptItem(sink.bytes(id))).plaintext.length, 100);
});

void t.test('item ids and content keys come from the injected random source', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const { phone } = await pair({
    p,
    hub,
    devicePsk: newDevicePsk(),
    phoneDir: join(root, 'phone'),
  });
  const asked: number[] = [];
  const sink = new MemorySink();
  const sealer = new MlsItemSealer({
    hub,
    sink,
    deviceId: DEVICE_ID,
    random: (n) => {
      asked.push(n);
      return new Uint8Array(n).fill(0xa5);
    },
  });
  const w = await sealer.begin({ kind: 'clip', startedAt: 0, codec: 'video/mp4' });
  t.equal(w.itemId, 'a5'.repeat(16), 'the item id is the source’s bytes');
  t.same(asked, [16, 32], 'item id, then content key');
  await w.write(Buffer.from('known key'));
  await w.close(1);
  const reader = phone!.openItem();
  await reader.push(sink.bytes(w.itemId));
  t.equal(reader.finish().plaintext.toString(), 'known key');
});

void t.test(
  'a sink with appendParts gets whole records, each as its parts; the bytes are the same',
  async (t) => {
    const root = tempDir();
    t.teardown(() => {
      rmSync(root, { recursive: true, force: true });
    });
    const hub = await openHub(p, join(root, 'hub'));
    const { phone } = await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'ph') });
    const file = join(root, 'item.bin');
    const fd = openSync(file, 'w');
    const calls: { records: number; parts: number; final: boolean }[] = [];
    const sink: CiphertextSink = {
      append: (_id, _kind, bytes, final) => {
        writeSync(fd, bytes);
        calls.push({ records: 0, parts: 0, final });
        return Promise.resolve();
      },
      appendParts: (_id, _kind, records, final) => {
        const parts = records.flat();
        writevSync(fd, parts);
        calls.push({ records: records.length, parts: parts.length, final });
        return Promise.resolve();
      },
    };
    const sealer = sealerFor(hub, sink, 1000);
    const w = await sealer.begin({ kind: 'clip', startedAt: 1, codec: 'video/mp4' });
    const plain = Buffer.alloc(2500, 7);
    await w.write(plain);
    await w.write(new Uint8Array(0));
    await w.close(10);
    closeSync(fd);
    t.same(
      calls,
      [
        { records: 0, parts: 0, final: false },
        { records: 3, parts: 9, final: false },
        { records: 0, parts: 0, final: true },
      ],
      'header, one vectored call with 3 records of 3 parts each, end record',
    );
    const opened = await phone!.decryptItem(readFileSync(file));
    t.ok(opened.plaintext.equals(plain), 'the phone opens what was written as parts');
  },
);

void t.test(
  'a thumbnail rides in its clip epoch: one advance per event, either opens first',
  async (t) => {
    const root = tempDir();
    t.teardown(() => {
      rmSync(root, { recursive: true, force: true });
    });
    const hub = await openHub(p, join(root, 'hub'));
    const phones = [];
    for (const name of ['a', 'b']) {
      const { phone } = await pair({
        p,
        hub,
        devicePsk: newDevicePsk(),
        phoneDir: join(root, name),
      });
      phones.push(phone!);
    }
    const [a, b] = phones as [E2eePhone, E2eePhone];
    const sink = new MemorySink();
    const sealer = sealerFor(hub, sink);
    const motion0 = hub.epoch(a.phoneId, 'motion');
    const thumb0 = hub.epoch(a.phoneId, 'thumbnail');
    const clip = await sealer.begin({ kind: 'clip', startedAt: 1, codec: 'video/mp4' });
    await clip.write(Buffer.from('clip 1'));
    const thumb = await sealer.begin({
      kind: 'thumbnail',
      startedAt: 2,
      codec: 'image/jpeg',
      sameEpochAs: clip.itemId,
    });
    await thumb.write(Buffer.from('thumb 1'));
    await thumb.close(0);
    await clip.close(10);
    t.equal(hub.epoch(a.phoneId, 'motion'), motion0 + 1n, 'one motion advance for the event');
    t.equal(hub.epoch(a.phoneId, 'thumbnail'), thumb0, 'the thumbnail group did not advance');
    t.equal(thumb.epoch, clip.epoch, 'the thumbnail reports its clip epoch');
    const th = parseHeader(sink.bytes(thumb.itemId));
    const ch = parseHeader(sink.bytes(clip.itemId));
    if (!th.ok || !ch.ok) throw new Error('headers');
    t.same(
      th.value.header.core.recipients,
      ch.value.header.core.recipients,
      "the thumbnail's header repeats the clip's recipients: groups, epochs, handshakes",
    );
    // phone a opens the clip first, phone b the thumbnail first
    t.equal((await a.decryptItem(sink.bytes(clip.itemId))).plaintext.toString(), 'clip 1');
    t.equal((await a.decryptItem(sink.bytes(thumb.itemId))).plaintext.toString(), 'thumb 1');
    t.equal((await b.decryptItem(sink.bytes(thumb.itemId))).plaintext.toString(), 'thumb 1');
    t.equal((await b.decryptItem(sink.bytes(clip.itemId))).plaintext.toString(), 'clip 1');
    t.notSame(
      await a.itemKey(thumb.itemId),
      await a.itemKey(clip.itemId),
      'content keys differ per item',
    );

    // the next event's clip moves the epoch on: a late thumbnail of the first clip gets its own
    // epoch in the thumbnail group (as before this change), which the phone still opens
    const clip2 = await sealer.begin({ kind: 'clip', startedAt: 3, codec: 'video/mp4' });
    await clip2.close(1);
    const late = await sealer.begin({
      kind: 'thumbnail',
      startedAt: 4,
      codec: 'image/jpeg',
      sameEpochAs: clip.itemId,
    });
    await late.write(Buffer.from('late'));
    await late.close(0);
    t.equal(hub.epoch(a.phoneId, 'thumbnail'), thumb0 + 1n, 'fallback: a thumbnail-group advance');
    for (const ph of phones) {
      await ph.decryptItem(sink.bytes(clip2.itemId));
      t.equal((await ph.decryptItem(sink.bytes(late.itemId))).plaintext.toString(), 'late');
    }
    // forward secrecy per event: once the phone deletes the thumbnail's key, the first event's
    // epoch (gone since clip2) cannot give it back
    await a.forgetItem(thumb.itemId);
    await t.rejects(a.decryptItem(sink.bytes(thumb.itemId)), { code: 'EREPLAYED_COMMIT' });
    // a clip cannot ride in another clip's epoch (kinds decide: ITEM_GROUPS)
    const m = hub.epoch(a.phoneId, 'motion');
    const c3 = await sealer.begin({
      kind: 'clip',
      startedAt: 5,
      codec: 'video/mp4',
      sameEpochAs: clip2.itemId,
    });
    await c3.close(1);
    t.equal(hub.epoch(a.phoneId, 'motion'), m + 1n, 'a clip always advances');
  },
);
