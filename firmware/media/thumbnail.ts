/**
 * Thumbnails from the encoded stream: the init segment plus one fragment
 * (a whole GOP, starting on a keyframe) decoded by a short-lived ffmpeg. The
 * camera itself is busy streaming to the encoder, so stills while recording
 * come from here; `Camera.still()` serves when the pipeline is stopped.
 */
import { run } from '../../hw/os/run.js';
import type { Fragment, InitSegment } from './fmp4.js';
import type { Thumbnailer } from './clips.js';

export function ffmpegThumbnailer(
  opts: { ffmpeg?: string; maxWidth?: number; timeoutMs?: number } = {},
): Thumbnailer {
  const maxWidth = opts.maxWidth ?? 320;
  return async (init: InitSegment, fragment: Fragment): Promise<Uint8Array> => {
    const input = new Uint8Array(init.bytes.length + fragment.bytes.length);
    input.set(init.bytes, 0);
    input.set(fragment.bytes, init.bytes.length);
    const r = await run(
      opts.ffmpeg ?? 'ffmpeg',
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-f',
        'mp4',
        '-i',
        'pipe:0',
        '-frames:v',
        '1',
        '-vf',
        `scale='min(${maxWidth},iw)':-2`,
        '-f',
        'mjpeg',
        'pipe:1',
      ],
      { stdin: input, timeoutMs: opts.timeoutMs ?? 60_000 },
    );
    return new Uint8Array(r.stdout);
  };
}
