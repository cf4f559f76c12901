import t from 'tap';
import {
  MotionDetector,
  buildMask,
  largestRegion,
  motionConfigSchema,
} from '../../../firmware/media/motion.js';

const W = 64;
const H = 48;

/** A grey frame with deterministic noise (+-amp) and optional white squares. */
function frame(
  seed: number,
  amp: number,
  squares: { x: number; y: number; s: number }[] = [],
): Uint8Array {
  const f = new Uint8Array(W * H);
  let r = seed * 2654435761;
  for (let i = 0; i < f.length; i++) {
    r = (r * 1103515245 + 12345) >>> 0;
    f[i] = 100 + ((r >>> 16) % (2 * amp + 1)) - amp;
  }
  for (const q of squares)
    for (let y = q.y; y < q.y + q.s; y++) for (let x = q.x; x < q.x + q.s; x++) f[y * W + x] = 250;
  return f;
}

t.test('noise alone never triggers', async (t) => {
  const d = new MotionDetector({ width: W, height: H });
  for (let i = 0; i < 50; i++) {
    const s = d.push(frame(i + 1, 20), i * 250);
    if (s) t.notOk(s.motion, `frame ${i}`);
  }
  t.notOk(d.active);
});

t.test('isolated changed pixels are removed by the noise filter, not by min area', async (t) => {
  const prev = new Uint8Array(W * H).fill(100);
  const cur = new Uint8Array(prev);
  // scattered speckle: every third pixel of every third row, never touching
  for (let y = 0; y < H; y += 3) for (let x = 0; x < W; x += 3) cur[y * W + x] = 255;
  const cfg = motionConfigSchema.parse({ width: W, height: H });
  const mask = buildMask(cfg);
  t.equal(largestRegion(prev, cur, mask, cfg), 0, 'speckle filtered');
  t.ok(
    largestRegion(prev, cur, mask, { ...cfg, noiseNeighbours: 0 }) >= 1,
    'without the filter it would count',
  );
});

t.test('a moving object starts an event after triggerFrames and ends after quietMs', async (t) => {
  const d = new MotionDetector({ width: W, height: H, triggerFrames: 2, quietMs: 1000 });
  let at = 0;
  const events: string[] = [];
  const step = (f: Uint8Array): void => {
    const s = d.push(f, at);
    if (s?.started) events.push(`start@${at}`);
    if (s?.ended) events.push(`end@${at}`);
    at += 250;
  };
  for (let i = 0; i < 4; i++) step(frame(i + 1, 5));
  for (let i = 0; i < 5; i++) step(frame(i + 10, 5, [{ x: 5 + i * 8, y: 20, s: 6 }]));
  for (let i = 0; i < 8; i++) step(frame(i + 20, 5));
  // the first frame without the square still differs from the last one with it (it vanished)
  t.same(events, ['start@1250', 'end@3250']);
});

t.test('masks hide a region; min area ignores small movers', async (t) => {
  const mover = (d: MotionDetector): boolean => {
    let started = false;
    for (let i = 0; i < 6; i++)
      started =
        d.push(frame(i + 1, 3, [{ x: 4 + i * 6, y: 4, s: 5 }]), i * 250)?.started === true ||
        started;
    return started;
  };
  t.ok(mover(new MotionDetector({ width: W, height: H })), 'unmasked: motion');
  t.notOk(
    mover(new MotionDetector({ width: W, height: H, masks: [{ x: 0, y: 0, w: 1, h: 0.3 }] })),
    'masked top band: none',
  );
  t.notOk(
    mover(new MotionDetector({ width: W, height: H, minAreaPct: 5 })),
    '5x5 square < 5% of the picture',
  );
});

t.test(
  'repeated identical frames are skipped; wrong sizes ignored; tick ends a stalled event; reset',
  async (t) => {
    const d = new MotionDetector({ width: W, height: H, triggerFrames: 1, quietMs: 500 });
    const a = frame(1, 2);
    t.ok(d.push(a, 0));
    t.equal(d.push(a, 100), undefined, 'same bytes again: skipped');
    t.equal(d.push(new Uint8Array(10), 200), undefined);
    t.ok(d.push(frame(2, 2, [{ x: 10, y: 10, s: 8 }]), 300)?.started);
    t.notOk(d.tick(500));
    t.ok(d.tick(900), 'quiet long enough without frames');
    t.notOk(d.active);
    d.reset();
    t.notOk(
      d.push(frame(3, 2, [{ x: 30, y: 10, s: 8 }]), 1000)?.motion,
      'no previous frame after reset',
    );
  },
);

t.test('config validation', async (t) => {
  t.notOk(
    motionConfigSchema.safeParse({ masks: [{ x: 0.8, y: 0, w: 0.5, h: 0.1 }] }).success,
    'mask outside the picture',
  );
  t.notOk(motionConfigSchema.safeParse({ threshold: 0 }).success);
  t.equal(motionConfigSchema.parse({}).fps, 4);
});
