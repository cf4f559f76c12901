/**
 * Live glass-to-glass latency in a real browser, every part real: the local
 * run (dev/local-run.ts: relay, supervisor-run hub with the media pipeline on
 * the simulated camera, companion and viewer) and Debian's Chromium driven by
 * playwright-core, clicking Live as a user would.
 *
 * Capture time: the simulated camera stamps every frame with the wall clock at
 * which ffmpeg generated it (hw/camera/frame-clock.ts). Presentation time: the
 * page's requestVideoFrameCallback, for every presented frame, gives its
 * expectedDisplayTime, mediaTime and presentedFrames; in that callback the
 * page draws the frame to a canvas and samples the clock cells. Latency =
 * presentation - capture (one machine, one clock).
 *
 * Breakdown per frame: `buffered ahead` is how much media the page held
 * beyond the presented frame (MSE playout buffer); `edge age` is latency minus
 * that: how old the newest frame the page had was (encoder + fragment + relay +
 * decryption + append).
 *
 * Live view sends whole fMP4 fragments (one per keyframe interval), so each
 * run is repeated for every keyframe interval listed.
 *
 *   npx tsx bench/live-glass-to-glass.ts [frames=240] [width=640] [fps=15] [gops=0.5,1]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SILENT } from '../base/logger.js';
import type { BrowserContext } from 'playwright-core';
import {
  frameLatency,
  launchChromium,
  recordPresentedFrames,
  startLiveInViewer,
} from '../dev/fixtures/browser.js';
import { startLocalRun } from '../dev/local-run.js';
import { encoderConfigSchema, gopFrames } from '../hw/encoder/encoder.js';

const FRAMES = Number(process.argv[2] ?? 240);
const WIDTH = Number(process.argv[3] ?? 640);
const FPS = Number(process.argv[4] ?? 15);
/** Keyframe intervals to compare ('default' = the hub's default, encoderConfigSchema). */
const DEFAULT_GOP = encoderConfigSchema.parse({}).gopSeconds;
const GOPS = (process.argv[5] ?? `default,1`)
  .split(',')
  .map((g) => (g === 'default' ? DEFAULT_GOP : Number(g)));
const HEIGHT = (WIDTH * 3) / 4;
if (
  !(Number.isInteger(FRAMES) && FRAMES >= 10) ||
  ![640, 320, 160].includes(WIDTH) ||
  ![30, 25, 15, 10, 5].includes(FPS) ||
  !GOPS.every((g) => g >= 0.25 && g <= 10)
) {
  console.error(
    'usage: live-glass-to-glass.ts [frames>=10] [width 640|320|160] [fps 30|25|15|10|5] [gops, each 0.25..10 s or "default", e.g. default,1]',
  );
  process.exit(2);
}
/** Frames presented before this many seconds of playback are the start-up, not the steady state. */
const WARMUP_S = 2;
const PATIENCE = { timeout: 240_000 };

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
const ms = (x: number): string => `${Math.round(x)} ms`;

interface Measured {
  readonly browser: string;
  readonly lines: string[];
}

/** One local run with `gopS`-second fragments; Live clicked in a fresh page of `browser`. */
async function measure(browser: BrowserContext, gopS: number): Promise<Measured> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-bench-g2g-'));
  const lr = await startLocalRun({
    dir,
    logger: SILENT,
    viewerPort: 0,
    width: WIDTH,
    height: HEIGHT,
    fps: FPS,
    motion: { intervals: [], periodS: 3600 },
    frameClock: true,
    gopSeconds: gopS,
  });
  try {
    const page = await browser.newPage();
    await page.goto(lr.viewerUrl);
    const firstS = (await startLiveInViewer(page, 0, PATIENCE.timeout)) / 1000;
    const ua = await page.evaluate(() => navigator.userAgent);
    const all = await recordPresentedFrames(page, WIDTH, FRAMES, PATIENCE.timeout);
    await page.close();
    const t0 = all[0]?.mediaTime ?? 0;
    const steady = all.filter((f) => f.mediaTime - t0 >= WARMUP_S);
    const rows = steady.map((f) => {
      const { captured, latency } = frameLatency(f);
      const ahead = (f.bufferedEnd - f.mediaTime) * 1000;
      return { latency, ahead, edge: latency - ahead, offset: captured - f.mediaTime * 1000 };
    });
    // a frame whose clock did not decode lands far from the others: count it, do not average it
    const offsets = rows.map((r) => r.offset).sort((a, b) => a - b);
    const mid = pct(offsets, 50);
    const good = rows.filter((r) => Math.abs(r.offset - mid) < 500);
    const lat = good.map((r) => r.latency).sort((a, b) => a - b);
    const ahead = good.map((r) => r.ahead).sort((a, b) => a - b);
    const edge = good.map((r) => r.edge).sort((a, b) => a - b);
    const last = all.at(-1);
    const first = all[0];
    const skipped =
      last && first ? last.presentedFrames - first.presentedFrames + 1 - all.length : 0;
    return {
      browser: /(Headless)?Chrome\/[0-9.]+/.exec(ua)?.[0] ?? ua,
      lines: [
        `fragments of ${gopS} s (keyframe interval${gopS === DEFAULT_GOP ? ', the default' : ''}, ${gopFrames({ fps: FPS, gopSeconds: gopS })} frames):`,
        `  first frame ${firstS.toFixed(1)} s after the click; ${all.length} frames presented (${skipped} not seen by the callback), ${good.length} measured after ${WARMUP_S} s (${rows.length - good.length} undecodable)`,
        `  glass-to-glass  median ${ms(pct(lat, 50))}  p95 ${ms(pct(lat, 95))}  min ${ms(lat[0] ?? NaN)}  max ${ms(lat.at(-1) ?? NaN)}`,
        `  where it goes   MSE buffered ahead of the glass: median ${ms(pct(ahead, 50))}, max ${ms(ahead.at(-1) ?? NaN)}; newest buffered frame's age (capture -> page): p5 ${ms(pct(edge, 5))}, median ${ms(pct(edge, 50))}`,
        `  clock check     capture - mediaTime spread p5..p95 ${ms(pct(offsets, 95) - pct(offsets, 5))}`,
      ],
    };
  } finally {
    await lr.stop();
    // the relay may still be finishing a blob write after close(): retry, never lose the figures
    await rm(dir, { recursive: true, force: true, maxRetries: 10 }).catch((e: unknown) => {
      console.error(`could not remove ${dir}: ${String(e)}`);
    });
  }
}

const loadBefore = loadavg();
const { browser, close } = await launchChromium();
try {
  for (const [i, gop] of GOPS.entries()) {
    const r = await measure(browser, gop);
    // printed as soon as measured: a later failure does not lose them
    if (i === 0)
      console.log(
        `live glass-to-glass through the relay: ${r.browser}, ${WIDTH}x${HEIGHT} @ ${FPS} fps, x264 ultrafast 1000 kb/s, ${FRAMES} frames per run`,
      );
    console.log(r.lines.join('\n'));
  }
} finally {
  await close();
}
const loadAfter = loadavg();
const avg = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
console.log(
  `load average ${avg(loadBefore)} before, ${avg(loadAfter)} after (${cpus().length} CPUs)`,
);
