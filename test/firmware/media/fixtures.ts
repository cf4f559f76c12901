/** Test helper: a real fragmented MP4 made by ffmpeg (small and quick). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../hw/os/run.js';
import { FMP4_MOVFLAGS } from '../../../hw/encoder/ffmpeg-encoder.js';

export async function makeFmp4(
  opts: {
    seconds: number;
    fps?: number;
    gop?: number;
    size?: string;
    /** A lavfi video source other than testsrc2 (e.g. 'color=c=gray'). */
    source?: string;
    /** Mux an AAC tone next to the video (as the audio option does). */
    audio?: boolean;
  } = { seconds: 3 },
): Promise<Buffer> {
  const fps = opts.fps ?? 10;
  const r = await run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      `${opts.source ?? 'testsrc2'}${opts.source?.includes('=') ? ':' : '='}s=${opts.size ?? '160x120'}:r=${fps}`,
      ...(opts.audio ? ['-f', 'lavfi', '-i', 'sine=f=440:r=16000'] : []),
      '-t',
      String(opts.seconds),
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-g',
      String(opts.gop ?? fps),
      '-sc_threshold',
      '0',
      '-bf',
      '0',
      '-pix_fmt',
      'yuv420p',
      ...(opts.audio ? ['-c:a', 'aac', '-b:a', '32k'] : []),
      '-f',
      'mp4',
      '-movflags',
      FMP4_MOVFLAGS,
      'pipe:1',
    ],
    { timeoutMs: 60_000 },
  );
  return r.stdout;
}

/**
 * ffprobe bytes through a temp file (over a pipe ffprobe can't seek and
 * under-reports fragmented MP4 durations): container duration (s), codec,
 * decoded frame count.
 */
export async function probe(
  bytes: Uint8Array,
): Promise<{ duration: number; codec: string; frames: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-probe-'));
  const file = join(dir, 'clip.mp4');
  try {
    await writeFile(file, bytes);
    const r = await run(
      'ffprobe',
      [
        '-v',
        'error',
        '-count_frames',
        '-show_entries',
        'format=duration:stream=codec_name,nb_read_frames',
        '-of',
        'json',
        file,
      ],
      { timeoutMs: 60_000 },
    );
    const j = JSON.parse(r.stdout.toString('utf8')) as {
      format?: { duration?: string };
      streams?: { codec_name?: string; nb_read_frames?: string }[];
    };
    return {
      duration: Number(j.format?.duration ?? 'NaN'),
      codec: j.streams?.[0]?.codec_name ?? '',
      frames: Number(j.streams?.[0]?.nb_read_frames ?? '0'),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
