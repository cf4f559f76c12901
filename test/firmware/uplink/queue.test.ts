import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';
import { MAX_SEGMENT_BYTES, UplinkQueue } from '../../../firmware/uplink/queue.js';
import { tempDir } from '../../relay/fixtures.js';

t.test('segments keep order, offsets and bytes across reopen', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-q-');
  t.teardown(cleanup);
  const fs = new DurableFs();
  const q = await UplinkQueue.open(dir, fs);
  const a = randomBytes(10);
  await q.push('item-a', 'clip', a, false);
  await q.push('item-b', 'thumbnail', randomBytes(5), true);
  await q.push('item-a', 'clip', randomBytes(7), false);
  t.equal(q.length, 3);
  t.equal(q.bytes, 22);
  const r = await UplinkQueue.open(dir, fs);
  t.same((await r.peek())?.data, a);
  t.same(r.oldest(), { itemId: 'item-a', kind: 'clip', offset: 0, final: false, seq: 1, size: 10 });
  // the next append of item-a continues at the right offset after reopening
  const s = await r.push('item-a', 'clip', randomBytes(3), true);
  t.equal(s.offset, 17);
  await r.remove(1);
  t.equal((await r.peek())?.seg.itemId, 'item-b');
  t.equal(await r.dropItem('item-a'), 2);
  t.equal(r.length, 1);
  // a file a power cut emptied is dropped on open
  await writeFile(`${dir}/000000000099.seg`, '');
  const r2 = await UplinkQueue.open(dir, fs);
  t.equal(r2.length, 1);
});

t.test('a crash at any point of a push leaves the queue consistent', async (t) => {
  const trace = new CrashController();
  {
    const { dir, cleanup } = await tempDir('vigil-q-');
    const q = await UplinkQueue.open(dir, new DurableFs(trace));
    await q.push('item-a', 'clip', randomBytes(10), false);
    await cleanup();
  }
  const points = trace.count;
  t.ok(points >= 5, `push passes ${points} crash points`);
  for (const mode of ['kill', 'power-loss'] as const) {
    for (let at = 1; at <= points; at++) {
      const { dir, cleanup } = await tempDir('vigil-q-');
      const fs = new DurableFs(new CrashController({ at, mode, delivery: 'throw' }));
      const q = await UplinkQueue.open(dir, fs);
      const data = randomBytes(10);
      let acked = false;
      try {
        await q.push('item-a', 'clip', data, false);
        acked = true;
      } catch (e) {
        if (!(e instanceof SimulatedCrash)) throw e;
      }
      const r = await UplinkQueue.open(dir, new DurableFs());
      const p = await r.peek();
      if (acked) t.same(p?.data, data, `${mode}@${at}: acknowledged push survives`);
      else t.ok(p === undefined || p.data.equals(data), `${mode}@${at}: absent or intact`);
      await cleanup();
    }
  }
});

/** `n` records of about `size` bytes, each as three parts (header, ciphertext, tag). */
function records(n: number, size: number): Buffer[][] {
  return Array.from({ length: n }, () => [randomBytes(7), randomBytes(size), randomBytes(16)]);
}

t.test(
  'pushParts: records split into files of at most MAX_SEGMENT_BYTES, bytes and offsets kept',
  async (t) => {
    const { dir, cleanup } = await tempDir('vigil-q-');
    t.teardown(cleanup);
    const q = await UplinkQueue.open(dir, new DurableFs());
    const head = randomBytes(100);
    await q.push('item-a', 'clip', head, false);
    // 20 records of ~64 KiB: 1.25 MiB, so two files, split between records
    const recs = records(20, 64 * 1024);
    const segs = await q.pushParts('item-a', 'clip', recs, false, 1234);
    const recBytes = recs.map((r) => Buffer.concat(r).length);
    t.equal(segs.length, 2);
    t.ok(
      segs.every((s) => s.size <= MAX_SEGMENT_BYTES),
      'no file is larger than MAX_SEGMENT_BYTES',
    );
    t.same(
      segs.map((s) => [s.offset, s.final, s.at]),
      [
        [100, false, 1234],
        [100 + (segs[0]?.size ?? 0), false, 1234],
      ],
    );
    let sum = 0;
    const cuts = recBytes.map((b) => (sum += b));
    t.ok(cuts.includes(segs[0]?.size ?? -1), 'the first file ends at a record boundary');
    // an empty final call still ends the item; then a reopened queue reads it all back
    t.same(
      (await q.pushParts('item-a', 'clip', [], true)).map((s) => [s.size, s.final]),
      [[0, true]],
    );
    t.same(await q.pushParts('item-b', 'clip', [], false), [], 'nothing to write, nothing written');
    const r = await UplinkQueue.open(dir, new DurableFs());
    t.equal(r.length, 4);
    const all = await Promise.all(r.segments().map((s) => r.read(s.seq)));
    t.same(Buffer.concat(all), Buffer.concat([head, ...recs.flat()]), 'byte for byte');
    t.equal(r.oldest()?.offset, 0);
    // a single record larger than the cap is a file of its own
    const big = records(1, MAX_SEGMENT_BYTES + 10);
    const one = await r.pushParts('item-c', 'thumbnail', big, true);
    t.same(
      one.map((s) => [s.size, s.final]),
      [[MAX_SEGMENT_BYTES + 10 + 23, true]],
    );
  },
);

t.test(
  'the index is trusted on read: a segment file changed underneath is reported, not sent',
  async (t) => {
    const { dir, cleanup } = await tempDir('vigil-q-');
    t.teardown(cleanup);
    const q = await UplinkQueue.open(dir, new DurableFs());
    const s = await q.push('item-a', 'clip', randomBytes(50), false);
    await writeFile(`${dir}/000000000001.seg`, Buffer.from([0, 0, 0, 2, 0x7b, 0x7d, 1, 2]));
    await t.rejects(q.read(s.seq), { code: 'ECORRUPT' });
    await t.rejects(q.peek(), { code: 'ECORRUPT' });
    await t.rejects(q.read(99), { code: 'ENOENT' });
    // reopening validates headers again: a file whose header is not ours is dropped
    const r = await UplinkQueue.open(dir, new DurableFs());
    t.equal(r.length, 0);
  },
);

t.test(
  'a crash between the files of one pushParts keeps a complete prefix; the item continues after it',
  async (t) => {
    const recs = records(40, 64 * 1024); // ~2.6 MiB: three files
    const write = async (q: UplinkQueue): Promise<void> => {
      await q.pushParts('item-a', 'clip', recs, false);
    };
    const trace = new CrashController();
    {
      const { dir, cleanup } = await tempDir('vigil-q-');
      await write(await UplinkQueue.open(dir, new DurableFs(trace)));
      await cleanup();
    }
    const points = trace.count;
    t.ok(points >= 15, `pushParts of three files passes ${points} crash points`);
    const whole = Buffer.concat(recs.flat());
    const tail = randomBytes(33);
    for (const mode of ['kill', 'power-loss'] as const) {
      for (let at = 1; at <= points; at++) {
        const { dir, cleanup } = await tempDir('vigil-q-');
        const fs = new DurableFs(new CrashController({ at, mode, delivery: 'throw' }));
        let acked = false;
        try {
          await write(await UplinkQueue.open(dir, fs));
          acked = true;
        } catch (e) {
          if (!(e instanceof SimulatedCrash)) throw e;
        }
        const r = await UplinkQueue.open(dir, new DurableFs());
        const segs = r.segments();
        const got = Buffer.concat(await Promise.all(segs.map((s) => r.read(s.seq))));
        if (acked) t.same(got, whole, `${mode}@${at}: acknowledged pushParts survives whole`);
        else t.same(got, whole.subarray(0, got.length), `${mode}@${at}: a complete prefix`);
        t.ok(
          segs.every(
            (s, i) =>
              s.offset === (i === 0 ? 0 : (segs[i - 1]?.offset ?? 0) + (segs[i - 1]?.size ?? 0)) &&
              !s.final,
          ),
          `${mode}@${at}: contiguous offsets, nothing final`,
        );
        // the next append of the item continues where the durable prefix ends
        const next = await r.push('item-a', 'clip', tail, true);
        t.equal(next.offset, got.length, `${mode}@${at}: the item continues after the prefix`);
        await cleanup();
      }
    }
  },
);
