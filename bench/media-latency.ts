/**
 * Motion -> first sealed chunk latency (target <= 1.5 s, issue 7).
 *
 * The simulated camera's object appears at scripted times; we measure from
 * that moment to the first sealed data record of the clip reaching the sink
 * (the header record with the MLS commit goes first; the first chunk holds the
 * init segment, then the pre-roll GOPs follow at once). Split into detection
 * (appearance -> motion-start) and sealing (motion-start -> first chunk).
 *
 *   npx tsx bench/media-latency.ts [--events 8] [--width 1280 --height 720 --fps 15]
 */
import { JsonLogger } from '../base/logger.js';
import { createMediaPipeline } from '../firmware/media/pipeline.js';
import type { MediaEvent } from '../firmware/media/pipeline.js';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import { CountingSink, arg, realSealer } from './media-common.js';

const events = arg('events', 8);
const width = arg('width', 1280);
const height = arg('height', 720);
const fps = arg('fps', 15);
const PERIOD_S = 9;
const MOTION_S = 3;
const OFFSET_S = 5; // first appearance

const sink = new CountingSink();
const { sealer, cleanup } = await realSealer(sink);
const camera = new SimulatedCamera({
  width,
  height,
  fps,
  schedule: { intervals: [[OFFSET_S, OFFSET_S + MOTION_S]], periodS: PERIOD_S },
});
const createdAt = Date.now() - camera.elapsedS() * 1000;
const pipeline = createMediaPipeline({
  camera,
  sealer,
  logger: new JsonLogger('bench', { level: 'warn', write: () => undefined }),
  config: {
    encoder: { width, height, fps, bitrateKbps: 2000, softwarePreset: 'ultrafast' },
    motion: { quietMs: 1000 },
    clips: { preRollS: 2, postRollS: 1 },
  },
});
const log: MediaEvent[] = [];
pipeline.on((e) => log.push(e));
await pipeline.start();
const endAt = createdAt + (OFFSET_S + PERIOD_S * events + 2) * 1000;
await new Promise((r) => setTimeout(r, endAt - Date.now()));
await pipeline.stop();
cleanup();

const detect: number[] = [];
const seal: number[] = [];
const total: number[] = [];
for (const started of log) {
  if (started.type !== 'clip-started') continue;
  const first = sink.firstDataAt.get(started.itemId);
  const motion = [...log].reverse().find((e) => e.type === 'motion-start' && e.at <= started.at);
  if (first === undefined || motion === undefined) continue;
  // the scripted appearance this event belongs to
  const k = Math.floor((motion.at - createdAt) / 1000 / PERIOD_S - OFFSET_S / PERIOD_S + 0.5);
  const appearedAt = createdAt + (OFFSET_S + k * PERIOD_S) * 1000;
  detect.push(motion.at - appearedAt);
  seal.push(first - motion.at);
  total.push(first - appearedAt);
}
const stats = (xs: number[]): string => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return `median ${q(0.5).toFixed(0)} ms, max ${(s.at(-1) ?? NaN).toFixed(0)} ms`;
};
console.log(
  [
    `media-latency: simulated ${width}x${height}@${fps}, motion side stream 64x48@4 fps, trigger 2 frames, real MLS sealer, ${total.length} events`,
    `  appearance -> motion-start:        ${stats(detect)}`,
    `  motion-start -> first sealed chunk: ${stats(seal)}`,
    `  appearance -> first sealed chunk:   ${stats(total)} (target <= 1500 ms)`,
  ].join('\n'),
);
