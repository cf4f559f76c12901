import t from 'tap';
import {
  FRAME_CLOCK_BITS,
  decodeFrameClock,
  frameClockFilters,
  frameClockLayout,
  frameClockSamplePoints,
  unwrapFrameClock,
} from '../../../hw/camera/frame-clock.js';

t.test('layout and filters: one drawbox per bit over a black strip', async (t) => {
  const l = frameClockLayout(320);
  const f = frameClockFilters(l);
  t.equal(f.split('drawbox=').length - 1, FRAME_CLOCK_BITS + 1);
  t.match(f, /^drawbox=x=0:y=0:w=240:h=10:color=black:t=fill,/);
  t.same(frameClockSamplePoints(l)[1], { x: 15, y: 5 });
});

t.test('frame clock codec: Gray-coded bits, unwrapped near a reference', async (t) => {
  const l = frameClockLayout(640);
  t.ok(l.cell * l.bits <= 640 && l.cell % 2 === 0, 'cells fit the picture');
  t.equal(frameClockLayout(160).cell * FRAME_CLOCK_BITS <= 160, true, 'also at 160 px');
  const encode = (ms: number): number[] => {
    const b = ms % 2 ** FRAME_CLOCK_BITS;
    const g = b ^ (b >>> 1);
    return Array.from({ length: FRAME_CLOCK_BITS }, (_, k) => ((g >>> k) & 1 ? 230 : 20));
  };
  for (const ms of [0, 1, 2, 12345, 2 ** 24 - 1, 1_790_000_123_456])
    t.equal(decodeFrameClock(encode(ms)), ms % 2 ** 24, `round trip ${ms}`);
  const now = 1_790_000_123_456;
  t.equal(unwrapFrameClock(decodeFrameClock(encode(now - 900)), now), now - 900);
  t.equal(unwrapFrameClock(decodeFrameClock(encode(now + 5)), now), now + 5);
  const wrapAt = now - (now % 2 ** 24); // a frame just before the wrap, read just after it
  t.equal(unwrapFrameClock(decodeFrameClock(encode(wrapAt - 3)), wrapAt + 10), wrapAt - 3);
  // a boundary crossed between two bits' evaluations costs one step, not a high bit
  const a = encode(0x7fffff);
  const b = encode(0x800000);
  const mixed = a.map((v, k) => (k < 12 ? v : (b[k] ?? 0)));
  t.ok([0x7fffff, 0x800000].includes(decodeFrameClock(mixed)), 'torn read lands on either side');
});
