/**
 * The camera port. A camera is something ffmpeg can read directly (Node never
 * pulls raw frames at full rate), that can describe itself, negotiate a format,
 * hand out a single frame or a JPEG still on request, and report whether it is
 * still plugged in.
 *
 * Implementations: `V4l2Camera` (a real /dev/videoN through v4l2-camera-ts and
 * its lower layer libv4l2-ts) and `SimulatedCamera` (ffmpeg lavfi test sources
 * with a scripted moving object, for the local run and host CI).
 */
import { VigilError } from '../../base/errors.js';

export interface CameraCapabilities {
  readonly driver: string;
  readonly card: string;
  readonly busInfo: string;
  /** Single-planar video capture. */
  readonly capture: boolean;
  /** Memory-to-memory device (an encoder/decoder, not a camera). */
  readonly m2m: boolean;
  readonly multiplanar: boolean;
  readonly streaming: boolean;
}

export interface FrameSize {
  readonly width: number;
  readonly height: number;
  /** Frame rates offered at this size (frames per second), highest first. Empty if unknown. */
  readonly fps: readonly number[];
}

export interface PixelFormatInfo {
  /** FourCC, e.g. 'YUYV', 'MJPG', 'H264'. */
  readonly fourcc: string;
  readonly description: string;
  readonly compressed: boolean;
  /** Emulated by libv4l's conversion layer: ffmpeg reading the device directly won't see it. */
  readonly emulated: boolean;
  readonly sizes: readonly FrameSize[];
}

export interface CameraFormat {
  readonly width: number;
  readonly height: number;
  readonly pixelFormat: string;
  readonly fps: number;
}

export interface Frame {
  readonly format: CameraFormat;
  /** A copy of the frame's bytes (safe to keep). */
  readonly data: Uint8Array;
  readonly capturedAt: number;
}

export type CameraPresenceEvent = 'unplugged' | 'replugged';

export interface Camera {
  /** Stable id: the device path for V4L2, 'simulated:<name>' for the simulator. */
  readonly id: string;
  readonly kind: 'v4l2' | 'simulated';
  capabilities(): Promise<CameraCapabilities>;
  formats(): Promise<readonly PixelFormatInfo[]>;
  /** The format currently configured on the device. */
  currentFormat(): Promise<CameraFormat>;
  /**
   * Ask for a format and return what the device actually negotiated. Drivers
   * silently fall back (vivid answers YUYV to a request for H264): with
   * `strict`, any difference in pixel format or size throws FormatMismatchError.
   */
  setFormat(want: CameraFormat, opts?: { strict?: boolean }): Promise<CameraFormat>;
  /** Capture one frame (for stills and diagnostics, never the video path). */
  captureFrame(): Promise<Frame>;
  /** A JPEG still, scaled to at most `maxWidth`. */
  still(opts?: { maxWidth?: number; signal?: AbortSignal }): Promise<Uint8Array>;
  /** Whether the device is there right now. */
  present(): Promise<boolean>;
  /**
   * ffmpeg input arguments that read this camera directly in the negotiated
   * format (everything up to and including `-i <input>`).
   */
  ffmpegInput(format: CameraFormat): readonly string[];
  /**
   * For cameras that encode H.264 themselves: bitrate and keyframe interval.
   * Resolves with a description of what the device refused (empty if all applied).
   */
  configureH264?(p: { bitrateKbps: number; gopFrames: number }): Promise<readonly string[]>;
  /** Watch for unplug/replug. Returns a stop function. */
  watch(onEvent: (e: CameraPresenceEvent) => void, intervalMs?: number): () => void;
}

export class CameraError extends VigilError {
  constructor(
    code: 'ECAMERA' | 'ECAMERA_GONE' | 'ECAMERA_BUSY' | 'ECAMERA_FORMAT',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'CameraError';
  }
}

export class FormatMismatchError extends CameraError {
  readonly wanted: CameraFormat;
  readonly got: CameraFormat;
  constructor(wanted: CameraFormat, got: CameraFormat) {
    super(
      'ECAMERA_FORMAT',
      `camera negotiated ${describeFormat(got)} instead of ${describeFormat(wanted)}`,
    );
    this.name = 'FormatMismatchError';
    this.wanted = wanted;
    this.got = got;
  }
}

export function describeFormat(f: CameraFormat): string {
  return `${f.pixelFormat} ${f.width}x${f.height}@${Math.round(f.fps * 100) / 100}`;
}

/** Whether the negotiated format differs from the request in what matters for the pipeline. */
export function formatDiffers(want: CameraFormat, got: CameraFormat): boolean {
  return (
    want.pixelFormat.toUpperCase() !== got.pixelFormat.toUpperCase() ||
    want.width !== got.width ||
    want.height !== got.height
  );
}

/** Pixel formats that are already H.264 (camera-native encoding). */
export function isH264(fourcc: string): boolean {
  return fourcc.toUpperCase() === 'H264';
}

/**
 * A presence watcher built on a `present()` probe: emits 'unplugged' once when
 * the probe turns false and 'replugged' once when it turns true again.
 */
export function watchPresence(
  probe: () => Promise<boolean>,
  onEvent: (e: CameraPresenceEvent) => void,
  intervalMs: number,
): () => void {
  let last: boolean | undefined;
  // An object, not a `let`: the flag changes while `tick` awaits.
  const st: { stopped: boolean } = { stopped: false };
  let busy = false;
  const tick = async (): Promise<void> => {
    if (busy || st.stopped) return;
    busy = true;
    try {
      const now = await probe().catch(() => false);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by stop() during the await
      if (st.stopped) return;
      if (last === true && !now) onEvent('unplugged');
      if (last === false && now) onEvent('replugged');
      last = now;
    } finally {
      busy = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  return () => {
    st.stopped = true;
    clearInterval(timer);
  };
}
