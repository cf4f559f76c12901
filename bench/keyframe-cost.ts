/**
 * What a shorter keyframe interval costs in bitrate: the simulated camera's
 * scene (SMPTE bars, temporal noise, a moving square; hw/camera/simulated-camera.ts)
 * encoded by libx264 with the hub's software settings (`-tune zerolatency -bf 0
 * -sc_threshold 0`, preset veryfast) at constant quality (CRF) instead of the
 * hub's bitrate cap, once per keyframe interval. At equal quality the size
 * ratio is the bitrate a shorter interval needs; with the hub's cap
 * (`bitrateKbps`) the same cost shows as lower quality instead.
 *
 * Scenes: the still scene with the default sensor noise, the still scene
 * without noise (a clean static picture, where keyframes weigh most), and the
 * square moving all the time.
 *
 *   npx tsx bench/keyframe-cost.ts [seconds=20] [width=1280] [fps=15] [gops=1,0.5] [crf=23]
 */
import { cpus, loadavg } from 'node:os';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import { gopFrames } from '../hw/encoder/encoder.js';
import { run } from '../hw/os/run.js';

const SECONDS = Number(process.argv[2] ?? 20);
const WIDTH = Number(process.argv[3] ?? 1280);
const FPS = Number(process.argv[4] ?? 15);
const GOPS = (process.argv[5] ?? '1,0.5').split(',').map(Number);
const CRF = Number(process.argv[6] ?? 23);
const HEIGHT = Math.round((WIDTH * 9) / 16 / 2) * 2;
if (
  !(Number.isInteger(SECONDS) && SECONDS >= 2 && SECONDS <= 600) ||
  ![1920, 1280, 640, 320].includes(WIDTH) ||
  ![30, 25, 15, 10, 5].includes(FPS) ||
  !GOPS.every((g) => g >= 0.25 && g <= 10) ||
  !(CRF >= 0 && CRF <= 51)
) {
  console.error(
    'usage: keyframe-cost.ts [seconds 2..600] [width 1920|1280|640|320] [fps 30|25|15|10|5] [gops, e.g. 1,0.5] [crf 0..51]',
  );
  process.exit(2);
}

const SCENES = [
  { name: 'still, sensor noise 6', noise: 6, moving: false },
  { name: 'still, no noise', noise: 0, moving: false },
  { name: 'square moving throughout, noise 6', noise: 6, moving: true },
] as const;

/** Bytes of H.264 for `SECONDS` of a scene at one keyframe interval. */
async function encodedBytes(scene: (typeof SCENES)[number], gopS: number): Promise<number> {
  const cam = new SimulatedCamera({
    width: WIDTH,
    height: HEIGHT,
    fps: FPS,
    noise: scene.noise,
    schedule: scene.moving ? { intervals: [[0, 3600]] } : { intervals: [] },
  });
  const graph = cam.lavfiGraph({ width: WIDTH, height: HEIGHT, pixelFormat: 'YU12', fps: FPS }, 0);
  const gop = String(gopFrames({ fps: FPS, gopSeconds: gopS }));
  const r = await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      graph,
      '-t',
      String(SECONDS),
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-tune',
      'zerolatency',
      '-profile:v',
      'main',
      '-bf',
      '0',
      '-sc_threshold',
      '0',
      '-keyint_min',
      gop,
      '-g',
      gop,
      '-crf',
      String(CRF),
      '-f',
      'h264',
      'pipe:1',
    ],
    { timeoutMs: 600_000, maxStdoutBytes: 1024 * 1024 * 1024 },
  );
  return r.stdout.length;
}

const loadBefore = loadavg();
console.log(
  `keyframe interval cost: libx264 veryfast zerolatency CRF ${CRF}, ${WIDTH}x${HEIGHT} @ ${FPS} fps, ${SECONDS} s per encode`,
);
for (const scene of SCENES) {
  const kbps: number[] = [];
  for (const g of GOPS) kbps.push(((await encodedBytes(scene, g)) * 8) / SECONDS / 1000);
  const base = kbps[0] ?? NaN;
  console.log(
    `  ${scene.name}: ` +
      GOPS.map(
        (g, i) =>
          `${g} s (${gopFrames({ fps: FPS, gopSeconds: g })} frames) ${Math.round(kbps[i] ?? NaN)} kb/s` +
          (i === 0
            ? ''
            : ` (${(((kbps[i] ?? NaN) / base - 1) * 100).toFixed(0)} % vs ${GOPS[0]} s)`),
      ).join(', '),
  );
}
const avg = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
console.log(
  `load average ${avg(loadBefore)} before, ${avg(loadavg())} after (${cpus().length} CPUs)`,
);
