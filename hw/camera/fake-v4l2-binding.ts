/**
 * An in-memory V4L2 binding: devices described as data, answering like a
 * driver does (including the silent fallback of S_FMT to a format the device
 * has). For unit tests of everything above the ioctl layer; the real binding
 * is exercised against vivid/vicodec in the VM.
 */
import type { CameraFormat } from './camera.js';
import { CameraError } from './camera.js';
import type {
  BufType,
  RawCapability,
  RawFormatDesc,
  RawFrameSize,
  V4l2Binding,
} from './v4l2-binding.js';

export interface FakeDevice {
  readonly cap: RawCapability;
  /** Formats per buffer type. */
  readonly formats: Partial<Record<BufType, readonly RawFormatDesc[]>>;
  readonly sizes?: Readonly<Record<string, readonly RawFrameSize[]>>;
  /** fps per "FOURCC WxH". */
  readonly rates?: Readonly<Record<string, readonly number[]>>;
  format?: CameraFormat;
  /** Bytes returned by grabFrame (default: zeros of the format's size). */
  frame?: Uint8Array;
  /** Control ids the device has (others are refused); values set are kept in `controlValues`. */
  controls?: readonly number[];
  controlValues?: Map<number, number>;
}

export class FakeV4l2Binding implements V4l2Binding {
  readonly devices = new Map<string, FakeDevice>();
  readonly calls: string[] = [];

  add(path: string, dev: FakeDevice): this {
    this.devices.set(path, dev);
    return this;
  }

  remove(path: string): FakeDevice | undefined {
    const d = this.devices.get(path);
    this.devices.delete(path);
    return d;
  }

  #dev(path: string): FakeDevice {
    const d = this.devices.get(path);
    if (!d) throw new CameraError('ECAMERA_GONE', `${path}: device is gone`);
    return d;
  }

  listDevices(): Promise<readonly string[]> {
    return Promise.resolve([...this.devices.keys()].sort());
  }

  exists(path: string): Promise<boolean> {
    return Promise.resolve(this.devices.has(path));
  }

  querycap(path: string): Promise<RawCapability> {
    this.calls.push(`querycap ${path}`);
    return Promise.resolve().then(() => this.#dev(path).cap);
  }

  enumFormats(path: string, type: BufType): Promise<readonly RawFormatDesc[]> {
    this.calls.push(`enumFormats ${path} ${type}`);
    return Promise.resolve().then(() => this.#dev(path).formats[type] ?? []);
  }

  enumFrameSizes(path: string, fourcc: string): Promise<readonly RawFrameSize[]> {
    return Promise.resolve().then(() => this.#dev(path).sizes?.[fourcc] ?? []);
  }

  enumFrameRates(
    path: string,
    fourcc: string,
    width: number,
    height: number,
  ): Promise<readonly number[]> {
    return Promise.resolve().then(
      () => this.#dev(path).rates?.[`${fourcc} ${width}x${height}`] ?? [],
    );
  }

  getFormat(path: string): Promise<CameraFormat> {
    return Promise.resolve().then(() => {
      const d = this.#dev(path);
      if (!d.format) throw new CameraError('ECAMERA', `${path}: no format`);
      return d.format;
    });
  }

  setFormat(path: string, want: CameraFormat): Promise<CameraFormat> {
    this.calls.push(
      `setFormat ${path} ${want.pixelFormat} ${want.width}x${want.height}@${want.fps}`,
    );
    return Promise.resolve().then(() => {
      const d = this.#dev(path);
      const offered = d.formats[1] ?? [];
      // Like real drivers: an unknown pixel format falls back to the first offered one.
      const fourcc = offered.some((f) => f.fourcc === want.pixelFormat)
        ? want.pixelFormat
        : (offered[0]?.fourcc ?? want.pixelFormat);
      const sizes = (d.sizes?.[fourcc] ?? []).filter((s) => s.type === 'discrete');
      const exact = sizes.find((s) => s.width === want.width && s.height === want.height);
      const size = exact ?? sizes[0] ?? { width: want.width, height: want.height };
      const rates = d.rates?.[`${fourcc} ${size.width}x${size.height}`] ?? [want.fps];
      const fps = rates.includes(want.fps) ? want.fps : (rates[0] ?? want.fps);
      d.format = { pixelFormat: fourcc, width: size.width, height: size.height, fps };
      return d.format;
    });
  }

  setControls(path: string, controls: ReadonlyMap<number, number>): Promise<readonly number[]> {
    return Promise.resolve().then(() => {
      const d = this.#dev(path);
      const refused: number[] = [];
      d.controlValues ??= new Map();
      for (const [id, v] of controls) {
        if (d.controls?.includes(id) === true) d.controlValues.set(id, v);
        else refused.push(id);
      }
      return refused;
    });
  }

  grabFrame(path: string): Promise<Uint8Array> {
    this.calls.push(`grabFrame ${path}`);
    return Promise.resolve().then(() => {
      const d = this.#dev(path);
      if (d.frame) return d.frame;
      const f = d.format;
      return new Uint8Array(f ? f.width * f.height * 2 : 0);
    });
  }
}

/** A vivid-like webcam: YUYV/MJPG capture only. */
export function vividLike(): FakeDevice {
  return {
    cap: {
      driver: 'vivid',
      card: 'vivid',
      busInfo: 'platform:vivid-000',
      capabilities: 0x85200001,
      deviceCaps: 0x05200001,
    },
    formats: {
      1: [
        { fourcc: 'YUYV', description: 'YUYV 4:2:2', flags: 0 },
        { fourcc: 'RGB3', description: 'RGB3 (emulated)', flags: 2 },
      ],
    },
    sizes: {
      YUYV: [
        { type: 'discrete', width: 640, height: 480 },
        { type: 'discrete', width: 320, height: 240 },
      ],
    },
    rates: { 'YUYV 640x480': [30, 15], 'YUYV 320x240': [30, 15] },
  };
}

/** The legacy bcm2835-v4l2 camera on Debian's kernel: H.264 straight from the capture node. */
export function bcm2835V4l2Like(): FakeDevice {
  return {
    cap: {
      driver: 'bm2835 mmal',
      card: 'mmal service 16.1',
      busInfo: 'platform:bcm2835-v4l2-0',
      capabilities: 0x85200005,
      deviceCaps: 0x05200005,
    },
    formats: {
      1: [
        { fourcc: 'YU12', description: 'Planar YUV 4:2:0', flags: 0 },
        { fourcc: 'H264', description: 'H.264', flags: 1 },
        { fourcc: 'MJPG', description: 'Motion-JPEG', flags: 1 },
      ],
    },
    controls: [0x009909cf, 0x00990a66, 0x009909e2],
    sizes: {
      YU12: [{ type: 'stepwise', minWidth: 32, maxWidth: 2592, minHeight: 32, maxHeight: 1944 }],
      H264: [{ type: 'stepwise', minWidth: 32, maxWidth: 2592, minHeight: 32, maxHeight: 1944 }],
    },
  };
}

/** Raspberry Pi kernel's bcm2835-codec encoder node (/dev/video11): multi-planar M2M, raw -> H.264. */
export function bcm2835CodecEncoderLike(): FakeDevice {
  return {
    cap: {
      driver: 'bcm2835-codec',
      card: 'bcm2835-codec-encode',
      busInfo: 'platform:bcm2835-codec',
      capabilities: 0x84204000,
      deviceCaps: 0x04204000,
    },
    formats: {
      10: [
        { fourcc: 'YU12', description: 'Planar YUV 4:2:0', flags: 0 },
        { fourcc: 'NV12', description: 'Y/CbCr 4:2:0', flags: 0 },
      ],
      9: [{ fourcc: 'H264', description: 'H.264', flags: 1 }],
    },
  };
}

/** vicodec's stateful encoder node: M2M, raw -> FWHT (not H.264). */
export function vicodecEncoderLike(): FakeDevice {
  return {
    cap: {
      driver: 'vicodec',
      card: 'vicodec',
      busInfo: 'platform:vicodec',
      capabilities: 0x84208000,
      deviceCaps: 0x04208000,
    },
    formats: {
      2: [
        { fourcc: 'YU12', description: 'Planar YUV 4:2:0', flags: 0 },
        { fourcc: 'NV12', description: 'Y/CbCr 4:2:0', flags: 0 },
      ],
      1: [{ fourcc: 'FWHT', description: 'FWHT', flags: 1 }],
    },
  };
}

/** vicodec's stateful decoder node: M2M, FWHT -> raw. */
export function vicodecDecoderLike(): FakeDevice {
  return {
    cap: { ...vicodecEncoderLike().cap },
    formats: {
      2: [{ fourcc: 'FWHT', description: 'FWHT', flags: 1 }],
      1: [{ fourcc: 'YU12', description: 'Planar YUV 4:2:0', flags: 0 }],
    },
  };
}
