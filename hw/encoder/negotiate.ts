/**
 * Encoder negotiation: pick the encoder path for a camera (camera H.264, a
 * V4L2 M2M encoder, or software), set the camera format it needs, and fall
 * back when the driver answers with another format. Adapter work below the
 * media pipeline (firmware/media/pipeline.ts), which only asks for the result.
 *
 *   const { choice, format } = await negotiateEncoder({ camera, config, warn });
 */
import { VigilError } from '../../base/errors.js';
import { reasonOf } from '../../base/errors.js';
import type { Camera, CameraFormat } from '../camera/camera.js';
import { describeFormat, isH264 } from '../camera/camera.js';
import { ffmpegInputFormatOf } from '../camera/v4l2-camera.js';
import type { EncoderChoice, EncoderConfig, EncoderPreference, M2mDevice } from './encoder.js';
import { gopFrames, probeFfmpegEncoders, selectEncoder } from './encoder.js';

/** The camera settled on a pixel format ffmpeg cannot read. */
export class UnreadableFormatError extends VigilError {
  constructor(message: string) {
    super('EMEDIA', message);
    this.name = 'UnreadableFormatError';
  }
}

export interface NegotiationDeps {
  readonly camera: Camera;
  readonly config: EncoderConfig;
  readonly preference?: EncoderPreference;
  /** M2M encoder discovery (default: V4L2 probe for real cameras, none for the simulator). */
  readonly probeM2m?: () => Promise<readonly M2mDevice[]>;
  readonly ffmpegEncoders?: () => Promise<ReadonlySet<string>>;
  readonly ffmpeg?: string;
  /** A degraded outcome worth telling the owner (a format fallback, refused H.264 settings). */
  readonly warn: (message: string) => void;
}

export interface Negotiated {
  readonly choice: EncoderChoice;
  readonly format: CameraFormat;
}

export async function defaultProbeM2m(camera: Camera): Promise<readonly M2mDevice[]> {
  if (camera.kind !== 'v4l2') return [];
  const { LibV4l2Binding } = await import('../camera/v4l2-binding.js');
  const { probeM2mDevices } = await import('./v4l2-m2m.js');
  return probeM2mDevices(new LibV4l2Binding());
}

export async function negotiateEncoder(d: NegotiationDeps): Promise<Negotiated> {
  const cam = d.camera;
  const formats = await cam.formats();
  const encoders = await (d.ffmpegEncoders ?? (() => probeFfmpegEncoders(d.ffmpeg)))();
  const m2m = await (d.probeM2m ?? (() => defaultProbeM2m(cam)))();
  const pref = d.preference ?? 'auto';
  let choice = selectEncoder(
    { camera: { id: cam.id, kind: cam.kind, formats }, m2m, ffmpegEncoders: encoders },
    pref,
  );
  const e = d.config;
  const want: CameraFormat = {
    width: e.width,
    height: e.height,
    pixelFormat: choice.inputPixelFormat,
    fps: e.fps,
  };
  let got = await cam.setFormat(want);
  if (got.pixelFormat.toUpperCase() !== want.pixelFormat.toUpperCase()) {
    // The driver fell back silently (vivid answers YUYV to H264).
    d.warn(`camera negotiated ${describeFormat(got)} when asked for ${describeFormat(want)}`);
    if (choice.path === 'camera-h264' && !isH264(got.pixelFormat)) {
      const rest = formats.filter((f) => !isH264(f.fourcc));
      choice = selectEncoder(
        { camera: { id: cam.id, kind: cam.kind, formats: rest }, m2m, ffmpegEncoders: encoders },
        pref === 'camera-h264' ? 'camera-h264' : 'auto',
      );
      got = await cam.setFormat({ ...want, pixelFormat: choice.inputPixelFormat });
    }
    if (ffmpegInputFormatOf(got.pixelFormat) === undefined && cam.kind === 'v4l2')
      throw new UnreadableFormatError(`camera format ${got.pixelFormat} cannot be read by ffmpeg`);
  } else if (got.width !== want.width || got.height !== want.height) {
    d.warn(
      `camera offers ${describeFormat(got)} instead of ${describeFormat(want)}; scaling in the encoder`,
    );
  }
  if (choice.path === 'camera-h264' && cam.configureH264) {
    const refused = await cam
      .configureH264({ bitrateKbps: e.bitrateKbps, gopFrames: gopFrames(e) })
      .catch((err: unknown) => [reasonOf(err)]);
    if (refused.length > 0)
      d.warn(`camera refused H.264 settings: ${refused.join(', ')} (its defaults apply)`);
  }
  return { choice, format: got };
}
