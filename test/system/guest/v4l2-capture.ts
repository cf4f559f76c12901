/**
 * Capture frames from a V4L2 capture node through v4l2-camera-ts (the npm package a product
 * adapter can use). Reusable by camera/media scenarios. v4l2-camera-ts silently keeps the old
 * format when the device lacks the requested one, so the negotiated format is returned and
 * the caller must check it.
 */
import { Camera } from 'v4l2-camera-ts';

export interface CaptureRequest {
  readonly device: string;
  readonly width: number;
  readonly height: number;
  /** FourCC, e.g. "YUYV". */
  readonly pixelFormat: string;
  readonly frames: number;
  readonly buffers?: number;
  /** Per-frame wait limit. */
  readonly frameTimeoutMs?: number;
}

export interface Capture {
  readonly width: number;
  readonly height: number;
  readonly pixelFormat: string;
  readonly sizeImage: number;
  readonly bytesPerLine: number;
  readonly frames: readonly Buffer[];
}

export async function captureFrames(req: CaptureRequest): Promise<Capture> {
  const cam = new Camera();
  cam.open(req.device);
  try {
    cam.setFormat({ width: req.width, height: req.height, pixelFormatStr: req.pixelFormat });
    const f = cam.queryFormat();
    cam.start(req.buffers ?? 4);
    const frames: Buffer[] = [];
    try {
      for (let i = 0; i < req.frames; i++) {
        const limit = req.frameTimeoutMs ?? 5000;
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`no frame ${i} from ${req.device} within ${limit} ms`));
          }, limit);
        });
        try {
          // copy: the buffer is a view of a memory-mapped buffer that the driver reuses
          frames.push(Buffer.from(await Promise.race([cam.getNextFrame(), timeout])));
        } finally {
          clearTimeout(timer);
        }
      }
    } finally {
      cam.stop();
    }
    return {
      width: f.width,
      height: f.height,
      pixelFormat: f.pixelFormatStr,
      sizeImage: f.sizeImage,
      bytesPerLine: f.bytesPerLine,
      frames,
    };
  } finally {
    cam.close();
  }
}

/** What setFormat actually gave for a requested FourCC (without streaming). */
export function negotiateFormat(
  device: string,
  width: number,
  height: number,
  pixelFormat: string,
): string {
  const cam = new Camera();
  cam.open(device);
  try {
    cam.setFormat({ width, height, pixelFormatStr: pixelFormat });
    return cam.queryFormat().pixelFormatStr;
  } finally {
    cam.close();
  }
}
