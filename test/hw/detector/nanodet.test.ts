import t from 'tap';
import { decodeNanoDet, iou } from '../../../hw/detector/nanodet.js';

const BINS = 4;

/** One level of a W x H input at `stride`: all scores 0, all distributions flat. */
function level(stride: number, W: number, H: number, classes: number) {
  const cells = Math.ceil(W / stride) * Math.ceil(H / stride);
  const scores = new Float32Array(cells * classes);
  const edges = new Float32Array(cells * 4 * BINS);
  const gridW = Math.ceil(W / stride);
  return {
    out: { stride, scores, edges },
    /** Cell (x, y) scores `v` for class `c`, each edge exactly `d[k]` bins away. */
    set(c: number, x: number, y: number, v: number, d: [number, number, number, number]) {
      const i = y * gridW + x;
      scores[i * classes + c] = v;
      d.forEach((bin, k) => {
        // A sharp distribution: its expectation is `bin` to within 1e-6.
        for (let j = 0; j < BINS; j++) edges[(i * 4 + k) * BINS + j] = j === bin ? 30 : 0;
      });
    },
  };
}

t.test('cells become boxes in picture fractions, best first', async (t) => {
  const l8 = level(8, 64, 32, 3);
  const l16 = level(16, 64, 32, 3);
  l8.set(0, 1, 1, 0.9, [1, 1, 2, 2]); // person: centre (12, 12), box 4..28 x 4..28
  l16.set(2, 3, 0, 0.6, [1, 0, 0, 1]); // car: centre (56, 8), box 40..56 x 8..24
  const d = decodeNanoDet(
    { levels: [l8.out, l16.out], classes: 3, bins: BINS, width: 64, height: 32 },
    0.5,
  );
  t.equal(d.length, 2);
  t.equal(d[0]?.class, 'person');
  t.equal(d[1]?.class, 'car');
  const near = (a: number | undefined, b: number) => Math.abs((a ?? NaN) - b) < 1e-4;
  t.ok(near(d[0]?.box.x, 4 / 64) && near(d[0]?.box.y, 4 / 32), JSON.stringify(d[0]?.box));
  t.ok(near(d[0]?.box.w, 24 / 64) && near(d[0]?.box.h, 24 / 32), JSON.stringify(d[0]?.box));
  t.ok(near(d[1]?.box.x, 40 / 64) && near(d[1]?.box.y, 8 / 32), JSON.stringify(d[1]?.box));
  t.ok(near(d[1]?.box.w, 16 / 64) && near(d[1]?.box.h, 16 / 32), JSON.stringify(d[1]?.box));
});

t.test('the edge distance is the expectation of the softmax', async (t) => {
  const l = level(8, 32, 32, 1);
  l.set(0, 1, 1, 0.8, [0, 0, 0, 0]);
  // Right edge: equal logits on bins 1 and 3 -> 2 bins = 16 px from the centre (12).
  const i = 1 * 4 + 1;
  for (let j = 0; j < BINS; j++) l.out.edges[(i * 4 + 2) * BINS + j] = j === 1 || j === 3 ? 5 : -50;
  const [d] = decodeNanoDet(
    { levels: [l.out], classes: 1, bins: BINS, width: 32, height: 32 },
    0.5,
  );
  t.ok(d, 'one box');
  t.ok(Math.abs((d?.box.w ?? 0) - 16 / 32) < 1e-4, `width ${d?.box.w}`);
});

t.test('overlapping boxes of one class are one object; other classes stay', async (t) => {
  const l = level(8, 64, 64, 3);
  l.set(0, 3, 3, 0.9, [2, 2, 2, 2]);
  l.set(0, 4, 3, 0.7, [2, 2, 2, 2]); // the same person seen from the next cell
  l.set(2, 3, 4, 0.6, [2, 2, 2, 2]); // a car overlapping the person: another class, kept
  l.set(0, 0, 7, 0.8, [0, 0, 1, 0]); // another person far away
  const d = decodeNanoDet({ levels: [l.out], classes: 3, bins: BINS, width: 64, height: 64 }, 0.5);
  t.same(
    d.map((x) => [x.class, x.score.toFixed(1)]),
    [
      ['person', '0.9'],
      ['person', '0.8'],
      ['car', '0.6'],
    ],
  );
  t.same(
    decodeNanoDet({ levels: [l.out], classes: 3, bins: BINS, width: 64, height: 64 }, 0.95),
    [],
    'nothing under the minimum score',
  );
  t.equal(
    decodeNanoDet({ levels: [l.out], classes: 3, bins: BINS, width: 64, height: 64 }, 0.5, 1)
      .length,
    1,
    'at most maxObjects',
  );
});

t.test('intersection over union', async (t) => {
  const a = { x: 0, y: 0, w: 0.5, h: 0.5 };
  t.equal(iou(a, a), 1);
  t.equal(iou(a, { x: 0.5, y: 0, w: 0.5, h: 0.5 }), 0, 'touching boxes do not overlap');
  t.ok(Math.abs(iou(a, { x: 0.25, y: 0, w: 0.5, h: 0.5 }) - 1 / 3) < 1e-9);
});
