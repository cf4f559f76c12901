/**
 * V4L2 memory-to-memory (stateful) codecs: discovery and a driver.
 *
 * Discovery uses our own ioctl layer (QUERYCAP + ENUM_FMT on both queues,
 * single- and multi-planar), so the selection can tell an H.264 encoder
 * (bcm2835-codec) from an FWHT one (vicodec) or a decoder.
 *
 * Driving a codec: v4l2-camera-ts handles single-planar capture only, and the
 * stateful codec API needs two queues (OUTPUT for input frames, CAPTURE for
 * the coded stream), often multi-planar. `V4l2CtlM2mCodec` drives it through
 * v4l-utils' `v4l2-ctl --stream-mmap --stream-out-mmap` (see
 * docs/decisions.md: a maintained implementation of the whole stateful
 * sequence — S_FMT on both queues, REQBUFS, STREAMON, the QBUF/DQBUF loop,
 * source-change events on decoders, draining with V4L2_ENC_CMD_STOP). In
 * production on a Pi the H.264 path is ffmpeg's h264_v4l2m2m, which runs the
 * same sequence in-process while reading the camera itself.
 */
import { stat } from 'node:fs/promises';
import { run } from '../os/run.js';
import type { V4l2Binding } from '../camera/v4l2-binding.js';
import { BUF_TYPE } from '../camera/v4l2-binding.js';
import { discoverDevices } from '../camera/v4l2-camera.js';
import type { M2mDevice } from './encoder.js';

/** Every M2M node with the formats of its two queues. */
export async function probeM2mDevices(binding: V4l2Binding): Promise<readonly M2mDevice[]> {
  const out: M2mDevice[] = [];
  for (const d of await discoverDevices(binding)) {
    if (!d.caps.m2m) continue;
    const mp = d.caps.multiplanar;
    try {
      const outputFormats = await binding.enumFormats(
        d.path,
        mp ? BUF_TYPE.outputMplane : BUF_TYPE.output,
      );
      const captureFormats = await binding.enumFormats(
        d.path,
        mp ? BUF_TYPE.captureMplane : BUF_TYPE.capture,
      );
      out.push({
        path: d.path,
        driver: d.caps.driver,
        card: d.caps.card,
        outputFormats: outputFormats.map((f) => f.fourcc),
        captureFormats: captureFormats.map((f) => f.fourcc),
        multiplanar: mp,
      });
    } catch {
      /* vanished between QUERYCAP and ENUM_FMT */
    }
  }
  return out;
}

/** An encoder node for `coded` (raw in, `coded` out). */
export function findEncoder(devices: readonly M2mDevice[], coded: string): M2mDevice | undefined {
  return devices.find((d) => d.captureFormats.includes(coded) && !d.outputFormats.includes(coded));
}

/** A decoder node for `coded` (`coded` in, raw out). */
export function findDecoder(devices: readonly M2mDevice[], coded: string): M2mDevice | undefined {
  return devices.find((d) => d.outputFormats.includes(coded) && !d.captureFormats.includes(coded));
}

export interface M2mJob {
  readonly input: string;
  readonly output: string;
  /** FourCC queued on OUTPUT (what goes in). */
  readonly inFourcc: string;
  /** FourCC dequeued from CAPTURE (what comes out). */
  readonly outFourcc: string;
  /** Frame size; required for raw input (encoding), taken from the stream for decoding. */
  readonly width?: number;
  readonly height?: number;
  readonly frames: number;
  /** Codec controls by v4l2-ctl name, e.g. { video_bitrate: 4000000, video_gop_size: 30 }. */
  readonly controls?: Readonly<Record<string, number>>;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface M2mResult {
  readonly bytesOut: number;
  readonly log: string;
}

export function buildV4l2CtlArgs(device: string, job: M2mJob): string[] {
  const size =
    job.width !== undefined && job.height !== undefined
      ? `width=${job.width},height=${job.height},`
      : '';
  const args = [
    '-d',
    device,
    `--set-fmt-video-out=${size}pixelformat=${job.inFourcc}`,
    `--set-fmt-video=${size}pixelformat=${job.outFourcc}`,
  ];
  const ctrls = Object.entries(job.controls ?? {});
  if (ctrls.length > 0) args.push(`--set-ctrl=${ctrls.map(([k, v]) => `${k}=${v}`).join(',')}`);
  args.push(
    '--stream-mmap',
    '--stream-out-mmap',
    `--stream-from=${job.input}`,
    `--stream-to=${job.output}`,
    `--stream-count=${job.frames}`,
  );
  return args;
}

/** A stateful V4L2 M2M codec driven through v4l2-ctl. */
export class V4l2CtlM2mCodec {
  readonly device: M2mDevice;
  readonly #bin: string;

  constructor(opts: { device: M2mDevice; v4l2ctl?: string }) {
    this.device = opts.device;
    this.#bin = opts.v4l2ctl ?? 'v4l2-ctl';
  }

  async process(job: M2mJob): Promise<M2mResult> {
    const r = await run(this.#bin, buildV4l2CtlArgs(this.device.path, job), {
      timeoutMs: job.timeoutMs ?? 120_000,
      ...(job.signal ? { signal: job.signal } : {}),
    });
    const s = await stat(job.output);
    return { bytesOut: s.size, log: (r.stdout.toString('utf8') + r.stderr).slice(-2000) };
  }
}
