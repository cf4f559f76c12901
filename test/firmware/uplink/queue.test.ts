import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';
import { UplinkQueue } from '../../../firmware/uplink/queue.js';
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
