/**
 * Hub process CPU and RSS during simulated 1080p30, 4 Mbit/s recording, with
 * the encoder process (ffmpeg: lavfi source + libx264) reported separately.
 * Targets (issue 7): hub <= 64 MiB RSS and <= 3% of one core.
 *
 *   npx tsx bench/media-recording.ts                # 10 minutes (the issue's figure)
 *   npx tsx bench/media-recording.ts --minutes 2    # shorter
 *   options: --width 1920 --height 1080 --fps 30 --kbps 4000 --preset ultrafast
 *            --motion-every 60 --motion-for 10   (seconds; clips are sealed for real)
 *
 * The hub side is the real pipeline: fMP4 parsing, GOP ring, motion detection on
 * the grey side stream, clips and thumbnails sealed with the real MLS sealer
 * (post-quantum suite loaded). The "encoder" figure includes generating the
 * synthetic 1080p picture, which a real camera does not cost.
 */
import { JsonLogger } from '../firmware/log/logger.js';
import { createMediaPipeline } from '../firmware/media/pipeline.js';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import type { EncoderConfigInput } from '../hw/encoder/encoder.js';
import { CountingSink, MiB, arg, procUsage, realSealer, strArg } from './media-common.js';

const minutes = arg('minutes', 10);
const width = arg('width', 1920);
const height = arg('height', 1080);
const fps = arg('fps', 30);
const kbps = arg('kbps', 4000);
const preset = strArg('preset', 'ultrafast') as NonNullable<EncoderConfigInput['softwarePreset']>;
const every = arg('motion-every', 60);
const motionFor = arg('motion-for', 10);
const durationMs = minutes * 60_000;

const sink = new CountingSink();
const { sealer, cleanup } = await realSealer(sink);
global.gc?.();
const camera = new SimulatedCamera({
  width,
  height,
  fps,
  schedule: { intervals: [[every - motionFor, every - 0.001]], periodS: every },
});
const pipeline = createMediaPipeline({
  camera,
  sealer,
  logger: new JsonLogger('bench', { level: 'warn', write: () => undefined }),
  config: {
    encoder: { width, height, fps, bitrateKbps: kbps, softwarePreset: preset, gopSeconds: 1 },
    clips: { preRollS: 3, postRollS: 3 },
  },
});
await pipeline.start();
const warmupMs = 10_000;
await new Promise((r) => setTimeout(r, warmupMs));

const hub0 = process.cpuUsage();
const t0 = performance.now();
const encPid0 = pipeline.status().encoder.pid;
const enc0 = encPid0 !== undefined ? await procUsage(encPid0) : undefined;
let hubRssMax = 0;
let encRssMax = 0;
const hubRss: number[] = [];
const sampler = setInterval(() => {
  const rss = process.memoryUsage().rss;
  hubRss.push(rss);
  hubRssMax = Math.max(hubRssMax, rss);
  const pid = pipeline.status().encoder.pid;
  if (pid !== undefined)
    void procUsage(pid).then((u) => {
      if (u) encRssMax = Math.max(encRssMax, u.rss);
    });
}, 2000);
const progress = setInterval(() => {
  const s = pipeline.status();
  process.stderr.write(
    `[${((performance.now() - t0) / 1000).toFixed(0)} s] fragments ${s.counters.fragments}, clips ${s.counters.clips}, rss ${(process.memoryUsage().rss / MiB).toFixed(1)} MiB\n`,
  );
}, 60_000);
await new Promise((r) => setTimeout(r, durationMs));
clearInterval(sampler);
clearInterval(progress);

const wallS = (performance.now() - t0) / 1000;
const hub = process.cpuUsage(hub0);
const hubCpuS = (hub.user + hub.system) / 1e6;
const st = pipeline.status();
const encPid = st.encoder.pid;
const enc1 = encPid !== undefined ? await procUsage(encPid) : undefined;
await pipeline.stop();
cleanup();

const sorted = [...hubRss].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
const encCpuS = enc0 && enc1 && encPid === encPid0 ? enc1.cpuS - enc0.cpuS : NaN;
const lines = [
  `media-recording: simulated ${width}x${height}@${fps}, ${kbps} kbit/s, libx264 ${preset}, GOP 1 s, ${wallS.toFixed(0)} s measured after ${warmupMs / 1000} s warm-up`,
  `  encoded: ${st.counters.fragments} fragments, ${(st.counters.bytes / MiB).toFixed(1)} MiB (${((st.counters.bytes * 8) / wallS / 1000).toFixed(0)} kbit/s incl. warm-up), clips sealed: ${st.counters.clips}, thumbnails: ${st.counters.thumbnails}, ciphertext ${(sink.bytes / MiB).toFixed(1)} MiB`,
  `  hub process:     CPU ${((hubCpuS / wallS) * 100).toFixed(2)} % of one core (target <= 3 %), RSS median ${(median / MiB).toFixed(1)} MiB, max ${(hubRssMax / MiB).toFixed(1)} MiB (target <= 64 MiB)`,
  `  encoder process: CPU ${Number.isNaN(encCpuS) ? 'n/a (restarted)' : `${((encCpuS / wallS) * 100).toFixed(1)} % of one core`}, RSS max ${(encRssMax / MiB).toFixed(1)} MiB (ffmpeg incl. synthetic source), restarts ${st.encoder.restarts}`,
];
console.log(lines.join('\n'));
