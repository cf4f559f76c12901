/**
 * H.264 encoder selection. The chain is chosen at runtime, in this order:
 *
 *   1. camera-native H.264 (the device's capture queue offers H264, e.g. the
 *      legacy bcm2835-v4l2 driver on Debian's kernel): ffmpeg copies the stream;
 *   2. a V4L2 memory-to-memory H.264 encoder (bcm2835-codec at /dev/video11 on
 *      Raspberry Pi kernels), driven by ffmpeg's h264_v4l2m2m;
 *   3. software libx264, with a loud warning in status and logs.
 *
 * `selectEncoder` is pure: probing happens elsewhere, so every branch is
 * testable with descriptors of devices that aren't on this machine.
 */
import { z } from 'zod';
import type { PixelFormatInfo } from '../camera/camera.js';
import { isH264 } from '../camera/camera.js';
import { VigilError } from '../../base/errors.js';
import { run } from '../os/run.js';

export type EncoderPath = 'camera-h264' | 'v4l2-m2m' | 'software';
export type EncoderPreference = 'auto' | EncoderPath;

export const encoderConfigSchema = z
  .object({
    width: z.number().int().min(64).max(4096).default(1280),
    height: z.number().int().min(48).max(2304).default(720),
    fps: z.number().min(1).max(120).default(15),
    bitrateKbps: z.number().int().min(64).max(50_000).default(2000),
    /**
     * Keyframe interval in seconds (one fMP4 fragment per GOP). 0.5 s by default:
     * live view carries whole fragments, so this bounds its glass-to-glass
     * latency (docs/decisions.md "Live: a 0.5 s keyframe interval by default").
     */
    gopSeconds: z.number().min(0.25).max(10).default(0.5),
    /** libx264 preset for the software path. */
    softwarePreset: z
      .enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast'])
      .default('veryfast'),
  })
  .refine((c) => c.width % 2 === 0 && c.height % 2 === 0, {
    message: 'width and height must be even (4:2:0 video)',
  });
export type EncoderConfig = z.output<typeof encoderConfigSchema>;
export type EncoderConfigInput = z.input<typeof encoderConfigSchema>;

/** GOP length in frames for a config (at least 1). */
export function gopFrames(c: Pick<EncoderConfig, 'fps' | 'gopSeconds'>): number {
  return Math.max(1, Math.round(c.fps * c.gopSeconds));
}

/** A V4L2 memory-to-memory codec node, as probed. */
export interface M2mDevice {
  readonly path: string;
  readonly driver: string;
  readonly card: string;
  /** FourCCs accepted on the OUTPUT queue (raw frames in, for an encoder). */
  readonly outputFormats: readonly string[];
  /** FourCCs produced on the CAPTURE queue (coded stream out, for an encoder). */
  readonly captureFormats: readonly string[];
  readonly multiplanar: boolean;
}

export interface EncoderCandidates {
  readonly camera: {
    readonly id: string;
    readonly kind: 'v4l2' | 'simulated';
    readonly formats: readonly PixelFormatInfo[];
  };
  readonly m2m: readonly M2mDevice[];
  /** Encoders the installed ffmpeg offers (from `ffmpeg -encoders`). */
  readonly ffmpegEncoders: ReadonlySet<string>;
}

export interface EncoderChoice {
  readonly path: EncoderPath;
  /** The M2M device for 'v4l2-m2m'. */
  readonly device?: string;
  /** Camera pixel format ffmpeg should request. */
  readonly inputPixelFormat: string;
  readonly reason: string;
  /** Set on the software path: shown in status and logged at warn level. */
  readonly warning?: string;
  /** Why each faster path was not taken. */
  readonly rejected: readonly { readonly path: EncoderPath; readonly why: string }[];
}

export class EncoderUnavailableError extends VigilError {
  constructor(message: string) {
    super('EENCODER_UNAVAILABLE', message);
    this.name = 'EncoderUnavailableError';
  }
}

/** Raw formats ffmpeg can read from a camera and feed an encoder, best first. */
const RAW_PREFERENCE = [
  'YU12',
  'NV12',
  'YUYV',
  'UYVY',
  'NV21',
  'RGB3',
  'BGR3',
  'MJPG',
  'JPEG',
  'GREY',
];

function rawInputOf(formats: readonly PixelFormatInfo[]): string | undefined {
  const real = formats.filter((f) => !f.emulated && !isH264(f.fourcc));
  for (const want of RAW_PREFERENCE) if (real.some((f) => f.fourcc === want)) return want;
  return undefined;
}

/** Is this M2M node an H.264 encoder (raw in, H.264 out)? */
export function isH264Encoder(d: M2mDevice): boolean {
  return d.captureFormats.some(isH264) && !d.outputFormats.some(isH264);
}

export function selectEncoder(
  c: EncoderCandidates,
  preference: EncoderPreference = 'auto',
): EncoderChoice {
  const rejected: { path: EncoderPath; why: string }[] = [];
  const raw = rawInputOf(c.camera.formats);

  const cameraH264 = c.camera.formats.find((f) => isH264(f.fourcc) && !f.emulated);
  const tryCamera = (): EncoderChoice | undefined => {
    if (!cameraH264) {
      rejected.push({ path: 'camera-h264', why: `${c.camera.id} offers no H264 capture format` });
      return undefined;
    }
    return {
      path: 'camera-h264',
      inputPixelFormat: 'H264',
      reason: `${c.camera.id} delivers H.264 itself`,
      rejected: [...rejected],
    };
  };

  const tryM2m = (): EncoderChoice | undefined => {
    if (!c.ffmpegEncoders.has('h264_v4l2m2m')) {
      rejected.push({ path: 'v4l2-m2m', why: 'ffmpeg lacks the h264_v4l2m2m encoder' });
      return undefined;
    }
    if (raw === undefined) {
      rejected.push({
        path: 'v4l2-m2m',
        why: `${c.camera.id} offers no raw format to feed an encoder`,
      });
      return undefined;
    }
    if (c.m2m.length === 0) {
      rejected.push({ path: 'v4l2-m2m', why: 'no V4L2 memory-to-memory device found' });
      return undefined;
    }
    const enc = c.m2m.find(isH264Encoder);
    if (!enc) {
      const seen = c.m2m
        .map(
          (d) =>
            `${d.path} (${d.driver}: ${d.outputFormats.join('/')} -> ${d.captureFormats.join('/')})`,
        )
        .join(', ');
      rejected.push({ path: 'v4l2-m2m', why: `no M2M device encodes H.264; found ${seen}` });
      return undefined;
    }
    return {
      path: 'v4l2-m2m',
      device: enc.path,
      inputPixelFormat: raw,
      reason: `hardware H.264 encoder ${enc.path} (${enc.driver})`,
      rejected: [...rejected],
    };
  };

  const trySoftware = (): EncoderChoice | undefined => {
    if (!c.ffmpegEncoders.has('libx264')) {
      rejected.push({ path: 'software', why: 'ffmpeg lacks libx264' });
      return undefined;
    }
    if (raw === undefined) {
      rejected.push({
        path: 'software',
        why: `${c.camera.id} offers no raw format ffmpeg can read`,
      });
      return undefined;
    }
    const why = rejected.map((r) => `${r.path}: ${r.why}`).join('; ');
    return {
      path: 'software',
      inputPixelFormat: raw,
      reason: 'software libx264',
      warning:
        `SOFTWARE H.264 ENCODING (libx264): no hardware encoder available` +
        (why ? ` (${why})` : '') +
        '. Expect high CPU use and heat; lower resolution or frame rate on small boards.',
      rejected: [...rejected],
    };
  };

  const order: (() => EncoderChoice | undefined)[] =
    preference === 'auto'
      ? [tryCamera, tryM2m, trySoftware]
      : preference === 'camera-h264'
        ? [tryCamera]
        : preference === 'v4l2-m2m'
          ? [tryM2m]
          : [trySoftware];
  for (const attempt of order) {
    const choice = attempt();
    if (choice) return choice;
  }
  throw new EncoderUnavailableError(
    `no usable H.264 encoder (preference ${preference}): ` +
      rejected.map((r) => `${r.path}: ${r.why}`).join('; '),
  );
}

/** Parse `ffmpeg -encoders` output into encoder names. */
export function parseFfmpegEncoders(text: string): Set<string> {
  const out = new Set<string>();
  let inList = false;
  for (const line of text.split('\n')) {
    if (/^\s*-{3,}\s*$/.test(line)) {
      inList = true;
      continue;
    }
    if (!inList) continue;
    const m = /^\s*[VAS.][F.][S.][X.][B.][D.]\s+(\S+)/.exec(line);
    if (m?.[1] !== undefined) out.add(m[1]);
  }
  return out;
}

export async function probeFfmpegEncoders(ffmpeg = 'ffmpeg'): Promise<Set<string>> {
  const r = await run(ffmpeg, ['-hide_banner', '-encoders'], { timeoutMs: 15_000 });
  return parseFfmpegEncoders(r.stdout.toString('utf8'));
}
