/**
 * A real V4L2 capture device. Discovery, capabilities and formats come from
 * the binding's ioctls; the video path is ffmpeg reading the device node
 * itself (`-f v4l2`), so Node only ever sees single frames for stills.
 */
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
import type { RawCapability, V4l2Binding } from './v4l2-binding.js';
import { BUF_TYPE, CAP, CID, FMT_FLAG, enumerateFormats } from './v4l2-binding.js';

/** ffmpeg's -input_format names for the V4L2 FourCCs a camera may offer. */
const FFMPEG_INPUT_FORMAT: Readonly<Record<string, string>> = {
  YUYV: 'yuyv422',
  UYVY: 'uyvy422',
  YU12: 'yuv420p',
  NV12: 'nv12',
  NV21: 'nv21',
  RGB3: 'rgb24',
  BGR3: 'bgr24',
  GREY: 'gray',
  MJPG: 'mjpeg',
  JPEG: 'mjpeg',
  H264: 'h264',
};

/** ffmpeg rawvideo pixel formats, for turning one captured frame into a JPEG. */
const RAWVIDEO_PIX_FMT: Readonly<Record<string, string>> = {
  YUYV: 'yuyv422',
  UYVY: 'uyvy422',
  YU12: 'yuv420p',
  NV12: 'nv12',
  NV21: 'nv21',
  RGB3: 'rgb24',
  BGR3: 'bgr24',
  GREY: 'gray',
};

export function ffmpegInputFormatOf(fourcc: string): string | undefined {
  return FFMPEG_INPUT_FORMAT[fourcc.toUpperCase()];
}

export function capabilitiesOf(raw: RawCapability): CameraCapabilities {
  // device_caps describes this node; capabilities the whole physical device.
  const c = (raw.capabilities & CAP.deviceCaps) !== 0 ? raw.deviceCaps : raw.capabilities;
  return {
    driver: raw.driver,
    card: raw.card,
    busInfo: raw.busInfo,
    capture: (c & CAP.videoCapture) !== 0,
    m2m: (c & (CAP.m2m | CAP.m2mMplane)) !== 0,
    multiplanar: (c & (CAP.videoCaptureMplane | CAP.videoOutputMplane | CAP.m2mMplane)) !== 0,
    streaming: (c & CAP.streaming) !== 0,
  };
}

export interface V4l2CameraOptions {
  readonly binding: V4l2Binding;
  readonly path: string;
  /** ffmpeg binary (default 'ffmpeg'). */
  readonly ffmpeg?: string;
  /** Timeout for a single-frame capture. */
  readonly frameTimeoutMs?: number;
}

export class V4l2Camera implements Camera {
  readonly kind = 'v4l2' as const;
  readonly #b: V4l2Binding;
  /** The node path; it can change when the device comes back as another /dev/videoN. */
  #path: string;
  /** driver/card/bus of the device first seen at #path: how we recognise it after a replug. */
  #identity: string | undefined;
  readonly #ffmpeg: string;
  readonly #frameTimeoutMs: number;

  constructor(opts: V4l2CameraOptions) {
    this.#b = opts.binding;
    this.#path = opts.path;
    this.#ffmpeg = opts.ffmpeg ?? 'ffmpeg';
    this.#frameTimeoutMs = opts.frameTimeoutMs ?? 5000;
  }

  /** The current device node. */
  get id(): string {
    return this.#path;
  }

  async capabilities(): Promise<CameraCapabilities> {
    const raw = await this.#b.querycap(this.#path);
    this.#identity ??= identityOf(raw);
    return capabilitiesOf(raw);
  }

  async formats(): Promise<readonly PixelFormatInfo[]> {
    const all = await enumerateFormats(this.#b, this.id, BUF_TYPE.capture);
    return all.map((d) => ({
      fourcc: d.fourcc,
      description: d.description,
      compressed: (d.flags & FMT_FLAG.compressed) !== 0,
      emulated: (d.flags & FMT_FLAG.emulated) !== 0,
      sizes: d.sizes.flatMap((s) =>
        s.type === 'discrete'
          ? [{ width: s.width, height: s.height, fps: s.fps ?? [] }]
          : // A range: report its corners; setFormat negotiates anything in between.
            [
              { width: s.maxWidth, height: s.maxHeight, fps: [] },
              { width: s.minWidth, height: s.minHeight, fps: [] },
            ],
      ),
    }));
  }

  currentFormat(): Promise<CameraFormat> {
    return this.#b.getFormat(this.id);
  }

  async setFormat(want: CameraFormat, opts: { strict?: boolean } = {}): Promise<CameraFormat> {
    const got = await this.#b.setFormat(this.id, want);
    if (opts.strict === true && formatDiffers(want, got)) throw new FormatMismatchError(want, got);
    return got;
  }

  async captureFrame(): Promise<Frame> {
    const format = await this.#b.getFormat(this.id);
    const data = await this.#b.grabFrame(this.id, { timeoutMs: this.#frameTimeoutMs, skip: 0 });
    return { format, data, capturedAt: Date.now() };
  }

  async still(opts: { maxWidth?: number; signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const maxWidth = opts.maxWidth ?? 640;
    const scale = `scale='min(${maxWidth},iw)':-2`;
    const format = await this.#b.getFormat(this.id);
    const fourcc = format.pixelFormat.toUpperCase();
    const raw = RAWVIDEO_PIX_FMT[fourcc];
    const signalOpt = opts.signal ? { signal: opts.signal } : {};
    if (raw !== undefined || fourcc === 'MJPG' || fourcc === 'JPEG') {
      // One frame through v4l2-camera-ts, converted by ffmpeg from stdin.
      const frame = await this.captureFrame();
      const input =
        raw !== undefined
          ? ['-f', 'rawvideo', '-pix_fmt', raw, '-s', `${format.width}x${format.height}`]
          : ['-f', 'mjpeg'];
      const r = await run(
        this.#ffmpeg,
        [
          '-hide_banner',
          '-loglevel',
          'error',
          ...input,
          '-i',
          'pipe:0',
          '-frames:v',
          '1',
          '-vf',
          scale,
          '-f',
          'mjpeg',
          'pipe:1',
        ],
        { stdin: frame.data, timeoutMs: 60_000, ...signalOpt },
      );
      return new Uint8Array(r.stdout);
    }
    // Compressed formats (H.264): let ffmpeg read and decode from the device.
    const r = await run(
      this.#ffmpeg,
      [
        '-hide_banner',
        '-loglevel',
        'error',
        ...this.ffmpegInput(format),
        '-frames:v',
        '1',
        '-vf',
        scale,
        '-f',
        'mjpeg',
        'pipe:1',
      ],
      { timeoutMs: 60_000, ...signalOpt },
    );
    return new Uint8Array(r.stdout);
  }

  async configureH264(p: { bitrateKbps: number; gopFrames: number }): Promise<readonly string[]> {
    const want = new Map<number, number>([
      [CID.videoBitrate, p.bitrateKbps * 1000],
      [CID.h264IPeriod, p.gopFrames],
      // SPS/PPS before every IDR: each GOP decodes on its own.
      [CID.repeatSeqHeader, 1],
    ]);
    const names: Record<number, string> = {
      [CID.videoBitrate]: 'video_bitrate',
      [CID.h264IPeriod]: 'h264_i_frame_period',
      [CID.repeatSeqHeader]: 'repeat_sequence_header',
    };
    const refused = await this.#b.setControls(this.id, want);
    return refused.map((id) => names[id] ?? `0x${id.toString(16)}`);
  }

  async present(): Promise<boolean> {
    try {
      if (await this.#b.exists(this.#path)) {
        const raw = await this.#b.querycap(this.#path);
        const ident = identityOf(raw);
        this.#identity ??= ident;
        if (ident === this.#identity) return capabilitiesOf(raw).capture;
      }
    } catch {
      /* gone or not answering: look elsewhere */
    }
    // Replugged devices may come back under another node number: find it by identity.
    if (this.#identity === undefined) return false;
    for (const d of await discoverDevices(this.#b)) {
      if (!d.caps.capture || d.caps.m2m) continue;
      const raw = await this.#b.querycap(d.path).catch(() => undefined);
      if (raw && identityOf(raw) === this.#identity) {
        this.#path = d.path;
        return true;
      }
    }
    return false;
  }

  ffmpegInput(format: CameraFormat): readonly string[] {
    const inFmt = ffmpegInputFormatOf(format.pixelFormat);
    if (inFmt === undefined)
      throw new CameraError(
        'ECAMERA_FORMAT',
        `ffmpeg cannot read pixel format ${format.pixelFormat}`,
      );
    return [
      '-f',
      'v4l2',
      '-input_format',
      inFmt,
      '-video_size',
      `${format.width}x${format.height}`,
      ...(format.fps > 0 ? ['-framerate', String(format.fps)] : []),
      '-i',
      this.id,
    ];
  }

  watch(onEvent: (e: CameraPresenceEvent) => void, intervalMs = 1000): () => void {
    return watchPresence(() => this.present(), onEvent, intervalMs);
  }
}

function identityOf(raw: RawCapability): string {
  return `${raw.driver}|${raw.card}|${raw.busInfo}`;
}

export interface DiscoveredDevice {
  readonly path: string;
  readonly caps: CameraCapabilities;
}

/** Every V4L2 node with its capabilities; nodes that vanish or refuse QUERYCAP are skipped. */
export async function discoverDevices(binding: V4l2Binding): Promise<readonly DiscoveredDevice[]> {
  const out: DiscoveredDevice[] = [];
  for (const path of await binding.listDevices()) {
    try {
      out.push({ path, caps: capabilitiesOf(await binding.querycap(path)) });
    } catch {
      /* not a V4L2 node we can talk to (metadata node, gone meanwhile) */
    }
  }
  return out;
}

/** Capture-capable, non-M2M nodes: the cameras. */
export async function discoverCameras(binding: V4l2Binding): Promise<readonly DiscoveredDevice[]> {
  return (await discoverDevices(binding)).filter((d) => d.caps.capture && !d.caps.m2m);
}
