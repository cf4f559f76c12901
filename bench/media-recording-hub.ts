/**
 * The hub side of bench/media-recording.ts, run as its own process so its CPU
 * and RSS are measured like the real hub's (plain node, no TypeScript loader):
 * MLS hub + real sealer (post-quantum suite) + the media pipeline. Prints
 * JSON lines: {"encoderPid":N} when an encoder starts, {"status":...} at the end.
 */
import { httpRequest } from '../base/http.js';
import type { HttpRequester } from '../base/http.js';
import { join } from 'node:path';
import { z } from 'zod';
import { JsonLogger } from '../base/logger.js';
import { createMediaPipeline } from '../firmware/media/pipeline.js';
import { MlsHub } from '../firmware/mls/hub.js';
import { MlsItemSealer } from '../firmware/mls/sealer.js';
import type {
  Camera,
  CameraCapabilities,
  CameraFormat,
  CameraPresenceEvent,
  Frame,
  PixelFormatInfo,
} from '../hw/camera/camera.js';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import { DurableFs } from '../hw/os/fs.js';
import { loadMlsProfile } from '../protocol/mls-profile.js';
import type { CiphertextSink } from '../firmware/items.js';
import type { Uplink } from '../firmware/uplink/uplink.js';
import { ackingRelayHttp, openBenchHubSink } from './hub-sink-common.js';

const Args = z.object({
  root: z.string(),
  deviceId: z.string(),
  width: z.number(),
  height: z.number(),
  fps: z.number(),
  kbps: z.number(),
  preset: z.enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast']),
  seconds: z.number(),
  every: z.number(),
  motionFor: z.number(),
  replay: z.string().optional(),
  /**
   * `hub` (default): the production sink — retention's local copies in front of the
   * durable uplink queue, drained by the uplink's sender into a stand-in relay (an HTTP client
   * that acknowledges every append; no network). `counting`: bytes counted, nothing kept.
   */
  sink: z.enum(['hub', 'counting']).default('hub'),
  /** A loopback stand-in relay (bench/media-recording.ts runs it); none: in memory. */
  relayUrl: z.string().optional(),
});
const args = Args.parse(JSON.parse(process.argv[2] ?? '{}'));

/** A camera that "delivers H.264 itself" by replaying a pre-encoded file in real time. */
class ReplayCamera implements Camera {
  readonly id: string;
  readonly kind = 'simulated' as const;
  readonly #file: string;
  readonly #format: CameraFormat;
  constructor(file: string, format: CameraFormat) {
    this.id = `replay:${file}`;
    this.#file = file;
    this.#format = format;
  }
  capabilities(): Promise<CameraCapabilities> {
    return Promise.resolve({
      driver: 'replay',
      card: 'replay',
      busInfo: this.id,
      capture: true,
      m2m: false,
      multiplanar: false,
      streaming: true,
    });
  }
  formats(): Promise<readonly PixelFormatInfo[]> {
    const sizes = [
      { width: this.#format.width, height: this.#format.height, fps: [this.#format.fps] },
    ];
    return Promise.resolve([
      { fourcc: 'H264', description: 'replayed H.264', compressed: true, emulated: false, sizes },
    ]);
  }
  currentFormat(): Promise<CameraFormat> {
    return Promise.resolve(this.#format);
  }
  setFormat(): Promise<CameraFormat> {
    return Promise.resolve(this.#format);
  }
  captureFrame(): Promise<Frame> {
    return Promise.reject(new Error('not supported by the replay camera'));
  }
  still(): Promise<Uint8Array> {
    return Promise.reject(new Error('not supported by the replay camera'));
  }
  present(): Promise<boolean> {
    return Promise.resolve(true);
  }
  ffmpegInput(): readonly string[] {
    return ['-re', '-stream_loop', '-1', '-i', this.#file];
  }
  watch(_cb: (e: CameraPresenceEvent) => void): () => void {
    return () => undefined;
  }
}

class CountingSink implements CiphertextSink {
  bytes = 0;
  append(_id: string, _kind: string, bytes: Uint8Array): Promise<void> {
    this.bytes += bytes.length;
    return Promise.resolve();
  }
}

const profile = await loadMlsProfile();
const hub = await MlsHub.open({
  dir: join(args.root, 'hub'),
  fs: new DurableFs(),
  deviceId: args.deviceId,
  profile,
});
const counting = new CountingSink();
const logger = new JsonLogger('bench', {
  level: 'warn',
  write: (l) => process.stderr.write(`${l}\n`),
});
const relayUrl = args.relayUrl;
const relayHttp: HttpRequester =
  relayUrl === undefined
    ? ackingRelayHttp((n) => {
        counting.bytes += n;
      })
    : (url, init) => {
        const b = init?.body;
        counting.bytes += typeof b === 'string' ? Buffer.byteLength(b) : (b?.length ?? 0);
        return httpRequest(url, init);
      };
let uplink: Uplink | undefined;
let sink: CiphertextSink = counting;
if (args.sink === 'hub') {
  const { uplink: up, retention } = await openBenchHubSink({
    root: args.root,
    deviceId: args.deviceId,
    logger,
    http: relayHttp,
    ...(relayUrl !== undefined ? { relayUrl } : {}),
    backlog: true,
  });
  up.start();
  uplink = up;
  sink = retention.sink(up);
}
const sealer = new MlsItemSealer({ hub, sink, deviceId: args.deviceId });
const fmt = { width: args.width, height: args.height, pixelFormat: 'H264', fps: args.fps };
const camera: Camera = args.replay
  ? new ReplayCamera(args.replay, fmt)
  : new SimulatedCamera({
      width: args.width,
      height: args.height,
      fps: args.fps,
      schedule: {
        intervals: [[args.every - args.motionFor, args.every - 0.001]],
        periodS: args.every,
      },
    });
const pipeline = createMediaPipeline({
  camera,
  sealer,
  logger,
  config: {
    encoder: {
      width: args.width,
      height: args.height,
      fps: args.fps,
      bitrateKbps: args.kbps,
      softwarePreset: args.preset,
    },
    clips: { preRollS: 3, postRollS: 3 },
  },
});
pipeline.on((e) => {
  if (e.type === 'encoder-started')
    process.stdout.write(`${JSON.stringify({ encoderPid: e.pid })}\n`);
});
await pipeline.start();
if (args.replay)
  setInterval(() => {
    pipeline.trigger(args.motionFor * 1000);
  }, args.every * 1000).unref();
// What the process holds, sampled every 2 s (V8 heap, typed arrays / Buffers outside it):
// the medians go out with the status so the bench can say what the RSS is made of.
const mem: NodeJS.MemoryUsage[] = [];
const memTimer = setInterval(() => mem.push(process.memoryUsage()), 2000);
memTimer.unref();
await new Promise((r) => setTimeout(r, args.seconds * 1000));
clearInterval(memTimer);
const medianOf = (k: keyof NodeJS.MemoryUsage): number => {
  const xs = mem.map((m) => m[k]).sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)] ?? 0;
};
const memory = Object.fromEntries(
  (['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'] as const).map((k) => [
    k,
    medianOf(k),
  ]),
);
const status = pipeline.status();
await pipeline.stop();
await uplink?.drained();
await uplink?.stop();
process.stdout.write(`${JSON.stringify({ status, ciphertext: counting.bytes, memory })}\n`);
process.exit(0);
