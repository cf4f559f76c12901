import t from 'tap';
import { Fmp4Splitter } from '../../../firmware/media/fmp4.js';
import type { Fragment, InitSegment } from '../../../firmware/media/fmp4.js';
import { LiveSessions } from '../../../firmware/media/live.js';
import { SILENT } from '../../../base/logger.js';
import { makeFmp4, probe } from './fixtures.js';
import { MemorySealer } from './memory-sealer.js';

const bytes = await makeFmp4({ seconds: 6, fps: 5, gop: 5 });
let init: InitSegment | undefined;
const frags: Fragment[] = [];
new Fmp4Splitter({ onInit: (i) => (init = i), onFragment: (f) => frags.push(f) }).push(bytes);
const INIT = init!;

t.test('no stream, no live session', async (t) => {
  await t.rejects(
    new LiveSessions({ sealer: new MemorySealer(), logger: SILENT }).start(10),
    /no video stream/,
  );
});

t.test(
  'a live session streams init + fragments from the moment it starts, stop closes it',
  async (t) => {
    const sealer = new MemorySealer();
    const live = new LiveSessions({ sealer, logger: SILENT });
    live.onInit(INIT);
    live.onFragment(frags[0]!);
    const s = await live.start(60);
    t.equal(live.count, 1);
    live.onFragment(frags[1]!);
    live.onFragment(frags[2]!);
    await s.stop();
    t.equal(await s.ended, 'stopped');
    const item = sealer.of('live')[0]!;
    t.equal(item.state, 'closed');
    t.equal(item.durationMs, 2000);
    t.equal(item.chunks.length, 3);
    const p = await probe(MemorySealer.bytes(item));
    t.ok(Math.abs(p.duration - 2) < 0.25, `playable from zero: ${p.duration}`);
    t.equal(live.count, 0);
  },
);

t.test('time limit, encoder restart and failures end sessions cleanly', async (t) => {
  const sealer = new MemorySealer();
  const live = new LiveSessions({ sealer, logger: SILENT });
  live.onInit(INIT);
  const a = await live.start(2);
  live.onFragment(frags[0]!);
  live.onFragment(frags[1]!);
  t.equal(await a.ended, 'time limit');
  const b = await live.start(60);
  live.onInit(INIT);
  t.equal(await b.ended, 'encoder restarted');
  const c = await live.start(60);
  live.encoderLost('killed');
  t.equal(await c.ended, 'encoder lost: killed');
  await t.rejects(live.start(1), /no video stream/);
  live.onInit(INIT);
  const d = await live.start(60);
  sealer.failWritesOf = 'live';
  live.onFragment(frags[2]!);
  t.match(await d.ended, /failed: injected/);
  t.equal(sealer.of('live').at(-1)?.state, 'aborted');
  t.same(
    sealer
      .of('live')
      .slice(0, 3)
      .map((i) => i.state),
    ['closed', 'closed', 'closed'],
  );
  await live.stopAll();
});
