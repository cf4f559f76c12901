/**
 * A simulated camera behind the same port: ffmpeg lavfi test sources (static
 * SMPTE bars with temporal noise, so the motion detector's noise filtering is
 * exercised) and a white square that crosses the picture while the motion
 * schedule says so.
 *
 * The schedule is in seconds since the camera object was created (wall clock),
 * so it survives encoder restarts: a restarted ffmpeg is told how far into the
 * script it starts. `periodS` repeats the script (for the local dev run).
 *
 * With `frameClock`, every frame also carries its generation time (wall clock)
 * in a strip along the top edge (frame-clock.ts), for glass-to-glass latency.
 */
import { z } from 'zod';
import { ValidationError } from '../../base/errors.js';
import { run } from '../os/run.js';
import type {
  Camera,
  CameraCapabilities,
  CameraFormat,
  CameraPresenceEvent,
  Frame,
  PixelFormatInfo,
} from './camera.js';
import { CameraError, FormatMismatchError, formatDiffers, watchPresence } from './camera.js';
import { frameClockFilters, frameClockLayout } from './frame-clock.js';

export const motionScheduleSchema = z
  .object({
    /** [start, end) intervals in seconds during which the object moves. */
    intervals: z.array(z.tuple([z.number().min(0), z.number().min(0)])).max(64),
    /** Repeat the intervals every periodS seconds (0 = once). */
    periodS: z.number().min(0).default(0),
  })
  .refine((s) => s.intervals.every(([a, b]) => b > a), {
    message: 'each motion interval must end after it starts',
  })
  .refine((s) => s.periodS === 0 || s.intervals.every(([, b]) => b <= s.periodS), {
    message: 'intervals must fit inside periodS',
  });
export type MotionSchedule = z.input<typeof motionScheduleSchema>;

export interface SimulatedCameraOptions {
  readonly name?: string;
  readonly width?: number;
  readonly height?: number;
  readonly fps?: number;
  readonly schedule?: MotionSchedule;
  /** Temporal noise strength (ffmpeg `noise` alls, 0..100). Default 6. */
  readonly noise?: number;
  readonly ffmpeg?: string;
  readonly now?: () => number;
  /** Draw each frame's generation time into it (frame-clock.ts). Default false. */
  readonly frameClock?: boolean;
  /**
   * A still picture (JPEG/PNG path) as the scene instead of the colour bars: the
   * object detector's tests film a photo with or without a person. Letters,
   * digits and `_ . / -` only (it goes into an ffmpeg filter graph).
   */
  readonly background?: string;
}

const SIZES = [
  [1920, 1080],
  [1280, 720],
  [640, 480],
  [320, 240],
  [160, 120],
] as const;
const RATES = [30, 25, 15, 10, 5];

export class SimulatedCamera implements Camera {
  readonly id: string;
  readonly kind = 'simulated' as const;
  readonly #ffmpeg: string;
  readonly #now: () => number;
  readonly #createdAt: number;
  readonly #schedule: { intervals: [number, number][]; periodS: number };
  readonly #noise: number;
  readonly #frameClock: boolean;
  readonly #background: string | undefined;
  #format: CameraFormat;
  #present = true;

  constructor(opts: SimulatedCameraOptions = {}) {
    this.id = `simulated:${opts.name ?? 'cam0'}`;
    this.#ffmpeg = opts.ffmpeg ?? 'ffmpeg';
    this.#now = opts.now ?? Date.now;
    this.#createdAt = this.#now();
    if (opts.background !== undefined && !/^[\w./-]+$/.test(opts.background))
      throw new ValidationError(
        `simulated camera background path has characters a filter graph cannot take: ${opts.background}`,
      );
    this.#background = opts.background;
    const parsed = motionScheduleSchema.safeParse(opts.schedule ?? { intervals: [] });
    if (!parsed.success)
      throw new ValidationError(
        `simulated camera schedule: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
      );
    this.#schedule = parsed.data;
    this.#noise = opts.noise ?? 6;
    this.#frameClock = opts.frameClock ?? false;
    this.#format = {
      width: opts.width ?? 640,
      height: opts.height ?? 480,
      pixelFormat: 'YU12',
      fps: opts.fps ?? 15,
    };
  }

  /** Seconds since creation (where in the motion script we are). */
  elapsedS(): number {
    return (this.#now() - this.#createdAt) / 1000;
  }

  /** Whether the script has the object moving at `atS` seconds (default: now). */
  motionAt(atS = this.elapsedS()): boolean {
    const { intervals, periodS } = this.#schedule;
    const t = periodS > 0 ? atS % periodS : atS;
    return intervals.some(([a, b]) => t >= a && t < b);
  }

  /** Simulate pulling the USB cable / putting it back. */
  unplug(): void {
    this.#present = false;
  }
  replug(): void {
    this.#present = true;
  }

  /** Run synchronously, but report errors as a rejected promise like a real device would. */
  #sync<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  #assertPresent(): void {
    if (!this.#present) throw new CameraError('ECAMERA_GONE', `${this.id}: device is gone`);
  }

  capabilities(): Promise<CameraCapabilities> {
    return this.#sync(() => {
      this.#assertPresent();
      return {
        driver: 'vigil-sim',
        card: 'Vigil simulated camera',
        busInfo: this.id,
        capture: true,
        m2m: false,
        multiplanar: false,
        streaming: true,
      };
    });
  }

  formats(): Promise<readonly PixelFormatInfo[]> {
    return this.#sync(() => {
      this.#assertPresent();
      return [
        {
          fourcc: 'YU12',
          description: 'Planar YUV 4:2:0 (lavfi)',
          compressed: false,
          emulated: false,
          sizes: SIZES.map(([width, height]) => ({ width, height, fps: RATES })),
        },
      ];
    });
  }

  currentFormat(): Promise<CameraFormat> {
    return this.#sync(() => {
      this.#assertPresent();
      return this.#format;
    });
  }

  /** Like a driver: unknown pixel formats fall back to YU12, sizes snap to the nearest offered. */
  setFormat(want: CameraFormat, opts: { strict?: boolean } = {}): Promise<CameraFormat> {
    return this.#sync(() => {
      this.#assertPresent();
      const [w, h] = SIZES.reduce((best, s) =>
        Math.abs(s[0] * s[1] - want.width * want.height) <
        Math.abs(best[0] * best[1] - want.width * want.height)
          ? s
          : best,
      );
      const fps = RATES.reduce((best, r) =>
        Math.abs(r - want.fps) < Math.abs(best - want.fps) ? r : best,
      );
      const got: CameraFormat = { width: w, height: h, pixelFormat: 'YU12', fps };
      if (opts.strict === true && formatDiffers(want, got))
        throw new FormatMismatchError(want, got);
      this.#format = got;
      return got;
    });
  }

  /** The lavfi graph, starting `offsetS` seconds into the motion script. */
  lavfiGraph(format: CameraFormat, offsetS = this.elapsedS()): string {
    const { width: W, height: H, fps } = format;
    const box = Math.max(8, Math.round(Math.min(W, H) / 6));
    const t = `(t+${offsetS.toFixed(3)})`;
    const { intervals, periodS } = this.#schedule;
    const tt = periodS > 0 ? `mod(${t},${periodS})` : t;
    const enable =
      intervals.length === 0
        ? '0'
        : intervals.map(([a, b]) => `between(${tt},${a},${b - 0.001})`).join('+');
    // One crossing every ~3 s, whatever the resolution.
    const speed = Math.round(W / 3);
    const y = Math.round(H / 2 - box / 2);
    const clock = this.#frameClock ? `,${frameClockFilters(frameClockLayout(W))}` : '';
    const scene =
      this.#background === undefined
        ? `smptebars=s=${W}x${H}:r=${fps}`
        : `movie=${this.#background},loop=loop=-1:size=1:start=0,setpts=N/${fps}/TB,scale=${W}:${H},setsar=1`;
    return (
      `${scene},format=yuv420p,noise=alls=${this.#noise}:allf=t[bg];` +
      `color=c=white:s=${box}x${box}:r=${fps}[obj];` +
      `[bg][obj]overlay=x='mod(${t}*${speed},W)':y=${y}:eval=frame:enable='${enable}',format=yuv420p` +
      clock
    );
  }

  ffmpegInput(format: CameraFormat): readonly string[] {
    this.#assertPresent();
    return ['-re', '-f', 'lavfi', '-i', this.lavfiGraph(format)];
  }

  async captureFrame(): Promise<Frame> {
    this.#assertPresent();
    const format = this.#format;
    const r = await run(
      this.#ffmpeg,
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-f',
        'lavfi',
        '-i',
        this.lavfiGraph(format),
        '-frames:v',
        '1',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'yuv420p',
        'pipe:1',
      ],
      { timeoutMs: 15_000 },
    );
    return { format, data: new Uint8Array(r.stdout), capturedAt: this.#now() };
  }

  async still(opts: { maxWidth?: number; signal?: AbortSignal } = {}): Promise<Uint8Array> {
    this.#assertPresent();
    const maxWidth = opts.maxWidth ?? 640;
    const r = await run(
      this.#ffmpeg,
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-f',
        'lavfi',
        '-i',
        this.lavfiGraph(this.#format),
        '-frames:v',
        '1',
        '-vf',
        `scale='min(${maxWidth},iw)':-2`,
        '-f',
        'mjpeg',
        'pipe:1',
      ],
      { timeoutMs: 15_000, ...(opts.signal ? { signal: opts.signal } : {}) },
    );
    return new Uint8Array(r.stdout);
  }

  present(): Promise<boolean> {
    return Promise.resolve(this.#present);
  }

  watch(onEvent: (e: CameraPresenceEvent) => void, intervalMs = 250): () => void {
    return watchPresence(() => this.present(), onEvent, intervalMs);
  }
}
