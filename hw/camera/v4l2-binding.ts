/**
 * The lowest V4L2 port: ioctls on a device node. The real implementation uses
 * v4l2-camera-ts for what it covers (format get/set, mmap streaming of single
 * frames) and its lower layer libv4l2-ts for what it lacks (VIDIOC_QUERYCAP,
 * VIDIOC_ENUM_FMT, VIDIOC_ENUM_FRAMESIZES, VIDIOC_ENUM_FRAMEINTERVALS, and the
 * multi-planar queues of M2M codecs, which v4l2-camera-ts cannot address).
 *
 * Both native packages are loaded lazily, so a host without V4L2 (or without
 * the native build) can still load every module and run the simulator.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CameraFormat } from './camera.js';
import { CameraError } from './camera.js';

export interface RawCapability {
  readonly driver: string;
  readonly card: string;
  readonly busInfo: string;
  readonly capabilities: number;
  readonly deviceCaps: number;
}

export interface RawFormatDesc {
  readonly fourcc: string;
  readonly description: string;
  readonly flags: number;
}

export type RawFrameSize =
  | { readonly type: 'discrete'; readonly width: number; readonly height: number }
  | {
      readonly type: 'stepwise';
      readonly minWidth: number;
      readonly maxWidth: number;
      readonly minHeight: number;
      readonly maxHeight: number;
    };

/** V4L2 buffer types we enumerate formats on. */
export const BUF_TYPE = {
  capture: 1,
  output: 2,
  captureMplane: 9,
  outputMplane: 10,
} as const;
export type BufType = (typeof BUF_TYPE)[keyof typeof BUF_TYPE];

export const CAP = {
  videoCapture: 0x1,
  videoOutput: 0x2,
  videoCaptureMplane: 0x1000,
  videoOutputMplane: 0x2000,
  m2mMplane: 0x4000,
  m2m: 0x8000,
  streaming: 0x4000000,
  deviceCaps: 0x80000000,
} as const;

export const FMT_FLAG = { compressed: 0x1, emulated: 0x2 } as const;

/** A queue's formats, each with its frame sizes and (for discrete sizes) rates. */
export type FormatTree = readonly (RawFormatDesc & {
  readonly sizes: readonly (RawFrameSize & { readonly fps?: readonly number[] })[];
})[];

/**
 * The format tree of a queue: in one open of the device when the binding can
 * (`enumerateAll`), else call by call. Either way a size whose rates cannot be
 * listed gets none.
 */
export async function enumerateFormats(
  b: V4l2Binding,
  path: string,
  type: BufType,
): Promise<FormatTree> {
  if (b.enumerateAll) return b.enumerateAll(path, type);
  const out = [];
  for (const d of await b.enumFormats(path, type)) {
    const sizes = [];
    for (const s of await b.enumFrameSizes(path, d.fourcc)) {
      if (s.type !== 'discrete') sizes.push(s);
      else {
        const fps = await b
          .enumFrameRates(path, d.fourcc, s.width, s.height)
          .catch(() => [] as readonly number[]);
        sizes.push({ ...s, fps });
      }
    }
    out.push({ ...d, sizes });
  }
  return out;
}

export interface V4l2Binding {
  /** Device nodes named videoN under `devDir`. */
  listDevices(): Promise<readonly string[]>;
  exists(path: string): Promise<boolean>;
  querycap(path: string): Promise<RawCapability>;
  enumFormats(path: string, type: BufType): Promise<readonly RawFormatDesc[]>;
  enumFrameSizes(path: string, fourcc: string): Promise<readonly RawFrameSize[]>;
  /** Discrete frame rates (fps) at a size; [] when the driver reports none or a range. */
  enumFrameRates(
    path: string,
    fourcc: string,
    width: number,
    height: number,
  ): Promise<readonly number[]>;
  getFormat(path: string): Promise<CameraFormat>;
  /** VIDIOC_S_FMT + VIDIOC_S_PARM, then read back what the driver chose. */
  setFormat(path: string, want: CameraFormat): Promise<CameraFormat>;
  /** Stream-on, dequeue one frame (after `skip` warm-up frames), copy it, stream-off. */
  grabFrame(path: string, opts: { timeoutMs: number; skip: number }): Promise<Uint8Array>;
  /**
   * Formats of a queue with their frame sizes and discrete rates, in one open of
   * the device (optional: each open is costly under emulation and libv4l).
   */
  enumerateAll?(path: string, type: BufType): Promise<FormatTree>;
  /** VIDIOC_S_CTRL for each control id; returns the ids the driver refused. */
  setControls(path: string, controls: ReadonlyMap<number, number>): Promise<readonly number[]>;
}

/** Codec control ids (linux/v4l2-controls.h). */
export const CID = {
  videoBitrate: 0x009909cf,
  repeatSeqHeader: 0x009909e2,
  h264IPeriod: 0x00990a66,
} as const;

function cString(bytes: ArrayLike<number>): string {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] ?? 0;
    if (b === 0) break;
    out.push(b);
  }
  return Buffer.from(out).toString('utf8');
}

export function fourccToString(v: number): string {
  return String.fromCharCode(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
}

export function fourccFromString(s: string): number {
  const p = s.padEnd(4, ' ');
  return (
    (p.charCodeAt(0) |
      (p.charCodeAt(1) << 8) |
      (p.charCodeAt(2) << 16) |
      (p.charCodeAt(3) << 24)) >>>
    0
  );
}

function errnoOf(e: unknown): number | undefined {
  const n = (e as { errno?: unknown } | null)?.errno;
  return typeof n === 'number' ? n : undefined;
}

const ENODEV = 19;
const ENXIO = 6;
const ENOENT = 2;
const EBUSY = 16;
const EINVAL = 22;

function wrap(path: string, what: string, e: unknown): CameraError {
  const errno = errnoOf(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (errno === ENODEV || errno === ENXIO || errno === ENOENT)
    return new CameraError('ECAMERA_GONE', `${path}: ${what}: device is gone (${msg})`, {
      cause: e,
    });
  if (errno === EBUSY)
    return new CameraError('ECAMERA_BUSY', `${path}: ${what}: device is busy (${msg})`, {
      cause: e,
    });
  return new CameraError('ECAMERA', `${path}: ${what} failed (${msg})`, { cause: e });
}

/*
 * The shapes of the lazily loaded CommonJS modules, as far as we use them.
 * Their own typings reference ref-napi/ref-struct-di types that aren't
 * installed, so we state the few members we touch and cast once at load.
 */
interface Struct {
  ref(): Buffer;
}
interface CapStruct extends Struct {
  driver: ArrayLike<number>;
  card: ArrayLike<number>;
  bus_info: ArrayLike<number>;
  capabilities: number;
  device_caps: number;
}
interface FmtDescStruct extends Struct {
  index: number;
  type: number;
  flags: number;
  description: ArrayLike<number>;
  pixelformat: number;
}
interface FrmSizeStruct extends Struct {
  index: number;
  pixel_format: number;
  type: number;
  union: {
    discrete: { width: number; height: number };
    stepwise: { min_width: number; max_width: number; min_height: number; max_height: number };
  };
}
interface FrmIvalStruct extends Struct {
  index: number;
  pixel_format: number;
  width: number;
  height: number;
  type: number;
  union: { discrete: { numerator: number; denominator: number } };
}
interface Lib {
  v4l2_open(path: string, flags: number): number;
  v4l2_close(fd: number): unknown;
  v4l2_ioctl(fd: number, request: number, arg: Buffer): number;
}
interface Dev2 {
  v4l2_capability: new () => CapStruct;
  v4l2_fmtdesc: new () => FmtDescStruct;
  v4l2_frmsizeenum: new () => FrmSizeStruct;
  v4l2_frmivalenum: new () => FrmIvalStruct;
  ioctl: {
    VIDIOC_QUERYCAP: number;
    VIDIOC_ENUM_FMT: number;
    VIDIOC_ENUM_FRAMESIZES: number;
    VIDIOC_ENUM_FRAMEINTERVALS: number;
  };
}
interface CamFormat {
  width: number;
  height: number;
  pixelFormatStr: string;
  sizeImage: number;
  fpsNumerator: number;
  fpsDenominator: number;
}
interface CamInstance {
  readonly started: boolean;
  open(path: string): void;
  close(): void;
  queryFormat(): CamFormat;
  setFormat(f: {
    width: number;
    height: number;
    pixelFormatStr: string;
    fps?: { numerator: number; denominator: number };
  }): void;
  start(bufferCount?: number): void;
  stop(): void;
  getNextFrame(): Promise<Buffer>;
  setControl(id: number, value: number): unknown;
}
interface CamMod {
  Camera: new () => CamInstance;
}

interface Native {
  lib: Lib;
  dev2: Dev2;
  cam: CamMod;
}

/** libv4l2-ts + v4l2-camera-ts. */
export class LibV4l2Binding implements V4l2Binding {
  readonly #devDir: string;
  #native: Promise<Native> | undefined;

  constructor(opts: { devDir?: string } = {}) {
    this.#devDir = opts.devDir ?? '/dev';
  }

  #load(): Promise<Native> {
    this.#native ??= (async () => {
      try {
        const [lib, dev2, cam] = await Promise.all([
          import('libv4l2-ts/dist/libv4l2.js'),
          import('libv4l2-ts/dist/videodev2.js'),
          import('v4l2-camera-ts'),
        ]);
        return {
          lib: lib as unknown as Lib,
          dev2: dev2 as unknown as Dev2,
          cam: cam as unknown as CamMod,
        };
      } catch (e) {
        throw new CameraError('ECAMERA', `V4L2 native binding unavailable: ${String(e)}`, {
          cause: e,
        });
      }
    })();
    return this.#native;
  }

  async #withFd<T>(path: string, what: string, fn: (n: Native, fd: number) => T): Promise<T> {
    const n = await this.#load();
    let fd: number;
    try {
      // O_RDWR | O_NONBLOCK
      fd = n.lib.v4l2_open(path, 2 | 0o4000);
    } catch (e) {
      throw wrap(path, 'open', e);
    }
    try {
      return fn(n, fd);
    } catch (e) {
      throw wrap(path, what, e);
    } finally {
      try {
        n.lib.v4l2_close(fd);
      } catch {
        /* closing a vanished device can fail; nothing to do */
      }
    }
  }

  async listDevices(): Promise<readonly string[]> {
    let names: string[];
    try {
      names = await readdir(this.#devDir);
    } catch {
      return [];
    }
    return names
      .filter((n) => /^video\d+$/.test(n))
      .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
      .map((n) => join(this.#devDir, n));
  }

  async exists(path: string): Promise<boolean> {
    try {
      const s = await stat(path);
      return s.isCharacterDevice();
    } catch {
      return false;
    }
  }

  querycap(path: string): Promise<RawCapability> {
    return this.#withFd(path, 'VIDIOC_QUERYCAP', (n, fd) => {
      const cap = new n.dev2.v4l2_capability();
      n.lib.v4l2_ioctl(fd, n.dev2.ioctl.VIDIOC_QUERYCAP, cap.ref());
      return {
        driver: cString(cap.driver),
        card: cString(cap.card),
        busInfo: cString(cap.bus_info),
        capabilities: cap.capabilities >>> 0,
        deviceCaps: cap.device_caps >>> 0,
      };
    });
  }

  enumerateAll(path: string, type: BufType): Promise<FormatTree> {
    return this.#withFd(path, 'enumerate formats', (n, fd) =>
      LibV4l2Binding.#formatsOn(n, fd, type).map((f) => ({
        ...f,
        sizes: LibV4l2Binding.#sizesOn(n, fd, f.fourcc).map((sz) =>
          sz.type === 'discrete'
            ? { ...sz, fps: LibV4l2Binding.#ratesOrNone(n, fd, f.fourcc, sz.width, sz.height) }
            : sz,
        ),
      })),
    );
  }

  static #formatsOn(n: Native, fd: number, type: BufType): RawFormatDesc[] {
    const out: RawFormatDesc[] = [];
    for (let index = 0; index < 64; index++) {
      const d = new n.dev2.v4l2_fmtdesc();
      d.index = index;
      d.type = type;
      try {
        n.lib.v4l2_ioctl(fd, n.dev2.ioctl.VIDIOC_ENUM_FMT, d.ref());
      } catch (e) {
        if (errnoOf(e) === EINVAL) break;
        throw e;
      }
      out.push({
        fourcc: fourccToString(d.pixelformat),
        description: cString(d.description),
        flags: d.flags,
      });
    }
    return out;
  }

  static #sizesOn(n: Native, fd: number, fourcc: string): RawFrameSize[] {
    const out: RawFrameSize[] = [];
    for (let index = 0; index < 64; index++) {
      const s = new n.dev2.v4l2_frmsizeenum();
      s.index = index;
      s.pixel_format = fourccFromString(fourcc);
      try {
        n.lib.v4l2_ioctl(fd, n.dev2.ioctl.VIDIOC_ENUM_FRAMESIZES, s.ref());
      } catch (e) {
        if (errnoOf(e) === EINVAL) break;
        throw e;
      }
      if (s.type === 1) {
        out.push({
          type: 'discrete',
          width: s.union.discrete.width,
          height: s.union.discrete.height,
        });
      } else {
        const w = s.union.stepwise;
        out.push({
          type: 'stepwise',
          minWidth: w.min_width,
          maxWidth: w.max_width,
          minHeight: w.min_height,
          maxHeight: w.max_height,
        });
        break; // stepwise/continuous is a single entry
      }
    }
    return out;
  }

  /** Rates at one size; a driver that fails to list them (e.g. ENOTTY) offers none. */
  static #ratesOrNone(
    n: Native,
    fd: number,
    fourcc: string,
    width: number,
    height: number,
  ): number[] {
    try {
      return LibV4l2Binding.#ratesOn(n, fd, fourcc, width, height);
    } catch {
      return [];
    }
  }

  static #ratesOn(n: Native, fd: number, fourcc: string, width: number, height: number): number[] {
    const out: number[] = [];
    for (let index = 0; index < 64; index++) {
      const iv = new n.dev2.v4l2_frmivalenum();
      iv.index = index;
      iv.pixel_format = fourccFromString(fourcc);
      iv.width = width;
      iv.height = height;
      try {
        n.lib.v4l2_ioctl(fd, n.dev2.ioctl.VIDIOC_ENUM_FRAMEINTERVALS, iv.ref());
      } catch (e) {
        if (errnoOf(e) === EINVAL) break;
        throw e;
      }
      if (iv.type !== 1) break;
      const { numerator, denominator } = iv.union.discrete;
      if (numerator > 0) out.push(denominator / numerator);
    }
    return out.sort((a, b) => b - a);
  }

  enumFormats(path: string, type: BufType): Promise<readonly RawFormatDesc[]> {
    return this.#withFd(path, 'VIDIOC_ENUM_FMT', (n, fd) => LibV4l2Binding.#formatsOn(n, fd, type));
  }

  enumFrameSizes(path: string, fourcc: string): Promise<readonly RawFrameSize[]> {
    return this.#withFd(path, 'VIDIOC_ENUM_FRAMESIZES', (n, fd) =>
      LibV4l2Binding.#sizesOn(n, fd, fourcc),
    );
  }

  enumFrameRates(
    path: string,
    fourcc: string,
    width: number,
    height: number,
  ): Promise<readonly number[]> {
    return this.#withFd(path, 'VIDIOC_ENUM_FRAMEINTERVALS', (n, fd) =>
      LibV4l2Binding.#ratesOn(n, fd, fourcc, width, height),
    );
  }

  /** Open `path` through v4l2-camera-ts, run `fn`, and close it again whatever happens. */
  async #withCamera<T>(path: string, fn: (cam: CamInstance) => Promise<T> | T): Promise<T> {
    const n = await this.#load();
    const cam = new n.cam.Camera();
    try {
      cam.open(path);
    } catch (e) {
      throw wrap(path, 'open', e);
    }
    try {
      return await fn(cam);
    } finally {
      try {
        cam.close();
      } catch {
        /* vanished */
      }
    }
  }

  async getFormat(path: string): Promise<CameraFormat> {
    return this.#withCamera(path, (cam) => {
      try {
        return formatOf(cam.queryFormat());
      } catch (e) {
        throw wrap(path, 'VIDIOC_G_FMT', e);
      }
    });
  }

  async setFormat(path: string, want: CameraFormat): Promise<CameraFormat> {
    return this.#withCamera(path, (cam) => {
      try {
        // Frame rate as a fraction with 1000 as the denominator keeps 29.97 exact enough.
        cam.setFormat({
          width: want.width,
          height: want.height,
          pixelFormatStr: want.pixelFormat,
          fps: { numerator: 1000, denominator: Math.round(want.fps * 1000) },
        });
        return formatOf(cam.queryFormat());
      } catch (e) {
        throw wrap(path, 'VIDIOC_S_FMT', e);
      }
    });
  }

  async setControls(
    path: string,
    controls: ReadonlyMap<number, number>,
  ): Promise<readonly number[]> {
    return this.#withCamera(path, (cam) => {
      const refused: number[] = [];
      for (const [id, value] of controls) {
        try {
          cam.setControl(id, value);
        } catch {
          refused.push(id);
        }
      }
      return refused;
    });
  }

  async grabFrame(path: string, opts: { timeoutMs: number; skip: number }): Promise<Uint8Array> {
    return this.#withCamera(path, async (cam) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        // Read the format before streaming (the same sequence as the proven guest capture).
        const fmt = cam.queryFormat();
        cam.start(4);
        const grab = (async () => {
          let frame = await cam.getNextFrame();
          for (let i = 0; i < opts.skip; i++) frame = await cam.getNextFrame();
          // The mmap'd buffer is reused by the driver: copy before stream-off.
          const len = fmt.sizeImage > 0 ? Math.min(fmt.sizeImage, frame.length) : frame.length;
          return new Uint8Array(Buffer.from(frame.subarray(0, len)));
        })();
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new CameraError('ECAMERA', `${path}: no frame within ${opts.timeoutMs} ms`));
          }, opts.timeoutMs);
        });
        grab.catch(() => undefined);
        return await Promise.race([grab, timeout]);
      } catch (e) {
        if (e instanceof CameraError) throw e;
        throw wrap(path, 'capture', e);
      } finally {
        if (timer) clearTimeout(timer);
        try {
          if (cam.started) cam.stop();
        } catch {
          /* vanished */
        }
      }
    });
  }
}

/** v4l2-camera-ts's format as the port's CameraFormat (fps from the frame interval). */
function formatOf(f: CamFormat): CameraFormat {
  return {
    width: f.width,
    height: f.height,
    pixelFormat: f.pixelFormatStr,
    fps: f.fpsNumerator > 0 ? f.fpsDenominator / f.fpsNumerator : 0,
  };
}

/** Exposed for the M2M probe, which needs the same open/ioctl plumbing. */
export const FOURCC = { fromString: fourccFromString, toString: fourccToString } as const;
