import t from 'tap';
import { CENTERNET_STRIDE, decodeCenterNet } from '../../../hw/detector/centernet.js';

/** A heatmap [classes, H, W] and edges [4, H, W], zero but for the given cells. */
function grid(classes: number, H: number, W: number) {
  const heat = new Float32Array(classes * H * W);
  const edges = new Float32Array(4 * H * W);
  return {
    out: { heat, edges, classes, gridH: H, gridW: W },
    peak(c: number, x: number, y: number, v: number, e: [number, number, number, number]) {
      heat[c * H * W + y * W + x] = v;
      e.forEach((d, k) => (edges[k * H * W + y * W + x] = d));
    },
  };
}

t.test('peaks become boxes in picture fractions, best first', async (t) => {
  const g = grid(3, 8, 16); // input 64 x 32
  g.peak(0, 4, 4, 0.9, [8, 16, 8, 8]); // person at (16, 16)
  g.peak(2, 12, 2, 0.5, [4, 4, 4, 4]); // car at (48, 8)
  g.peak(2, 13, 2, 0.3, [4, 4, 4, 4]); // its weaker neighbour: not a peak
  const d = decodeCenterNet(g.out, 0.2);
  t.equal(d.length, 2);
  t.equal(d[0]?.class, 'person');
  t.equal(d[1]?.class, 'car');
  t.ok(Math.abs((d[0]?.score ?? 0) - 0.9) < 1e-6);
  const W = 16 * CENTERNET_STRIDE;
  const H = 8 * CENTERNET_STRIDE;
  t.same(d[0]?.box, { x: 8 / W, y: 0, w: 16 / W, h: 24 / H }, 'top edge clamped to the picture');
  t.same(decodeCenterNet(g.out, 0.95), [], 'nothing under the minimum score');
  t.equal(decodeCenterNet(g.out, 0.2, 1).length, 1, 'at most maxObjects');
});

t.test('a flat plateau gives one object, not one per cell', async (t) => {
  const g = grid(1, 4, 4);
  g.peak(0, 1, 1, 0.7, [1, 1, 1, 1]);
  g.peak(0, 2, 1, 0.7, [1, 1, 1, 1]);
  t.equal(decodeCenterNet(g.out, 0.5).length, 1);
});
