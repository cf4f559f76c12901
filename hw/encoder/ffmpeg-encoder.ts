/**
 * The encoder process: one ffmpeg that reads the camera directly, encodes (or
 * copies) H.264 and writes fragmented MP4 to stdout — one fragment per GOP —
 * and, when asked, a low-rate, low-resolution grey side stream for motion
 * detection to a Unix socket the hub listens on. With audio on, a second input
 * (the microphone) is encoded AAC-LC and muxed into the same fragments. Node never sees full-rate raw
 * frames: it gets the compressed stream and a few tiny grey frames a second.
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../../base/logger.js';
import { spawnProcess } from '../os/run.js';
import type { EncoderChoice, EncoderConfig } from './encoder.js';
import { gopFrames } from './encoder.js';

export interface MotionTap {
  /** ffmpeg output URL, e.g. 'unix:/run/vigil/media/motion.sock'. */
  readonly url: string;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
}

/** Audio muxed next to the video: a second ffmpeg input, encoded AAC-LC. */
export interface AudioTap {
  /** Input args from `AudioSource.ffmpegInput()` (up to and including `-i`). */
  readonly input: readonly string[];
  readonly sampleRate: number;
  readonly channels: number;
  readonly bitrateKbps: number;
}

export interface EncoderArgsInput {
  /** Camera input args from `Camera.ffmpegInput()`. */
  readonly input: readonly string[];
  readonly choice: EncoderChoice;
  readonly config: EncoderConfig;
  readonly motion?: MotionTap;
  /** Off unless given: the clips and live fragments are then video only. */
  readonly audio?: AudioTap;
}

/**
 * The audio half of the main output: input 1 encoded with ffmpeg's native AAC
 * encoder (AAC-LC, `mp4a.40.2`). It is the same on every video path — the
 * camera's own H.264 (copied), the V4L2 M2M encoder or libx264 — because the
 * muxer, not the video encoder, puts the two tracks together.
 */
export function audioOutputArgs(a: AudioTap): string[] {
  return [
    '-map',
    '1:a',
    '-c:a',
    'aac',
    '-profile:a',
    'aac_low',
    '-b:a',
    `${a.bitrateKbps}k`,
    '-ar',
    String(a.sampleRate),
    '-ac',
    String(a.channels),
  ];
}

/** fMP4 flags: an init segment up front, a self-contained fragment per keyframe. */
export const FMP4_MOVFLAGS = 'empty_moov+default_base_moof+frag_keyframe';

export function buildEncoderArgs(i: EncoderArgsInput): string[] {
  const { config: c, choice, motion, audio } = i;
  const gop = gopFrames(c);
  // With a second live input, the camera's input queue must not stall behind the audio thread.
  const videoIn = audio ? ['-thread_queue_size', '512', ...i.input] : [...i.input];
  const audioIn = audio ? [...audio.input] : [];
  const audioOut = audio ? audioOutputArgs(audio) : [];
  const kbps = c.bitrateKbps;
  const head = ['-hide_banner', '-loglevel', 'warning', '-nostats', '-nostdin'];
  const fmp4 = ['-f', 'mp4', '-movflags', FMP4_MOVFLAGS, '-flush_packets', '1', 'pipe:1'];
  const motionOut = (label: string, extra: readonly string[] = []): string[] =>
    motion ? ['-map', label, ...extra, '-f', 'rawvideo', '-pix_fmt', 'gray', motion.url] : [];
  const motionFilter = motion
    ? `scale=${motion.width}:${motion.height}:flags=area,format=gray`
    : '';

  switch (choice.path) {
    case 'camera-h264': {
      // The camera already encodes: copy its stream. Bitrate and GOP are camera
      // controls (set through V4L2 before starting). The motion stream decodes
      // keyframes only (one per GOP), which costs little even at 1080p.
      const input = motion ? ['-skip_frame', 'nokey', ...videoIn] : videoIn;
      return [
        ...head,
        ...input,
        ...audioIn,
        ...(motion ? ['-filter_complex', `[0:v]${motionFilter}[m]`] : []),
        '-map',
        '0:v',
        '-c:v',
        'copy',
        ...audioOut,
        ...fmp4,
        ...motionOut('[m]', ['-fps_mode', 'passthrough']),
      ];
    }
    case 'v4l2-m2m':
    case 'software': {
      const main = `scale=${c.width}:${c.height},format=yuv420p`;
      const graph = motion
        ? `[0:v]${main},split=2[v][m0];[m0]fps=${motion.fps},${motionFilter}[m]`
        : `[0:v]${main}[v]`;
      const codec =
        choice.path === 'software'
          ? [
              '-c:v',
              'libx264',
              '-preset',
              c.softwarePreset,
              '-tune',
              'zerolatency',
              '-profile:v',
              'main',
              '-bf',
              '0',
              '-sc_threshold',
              '0',
              '-keyint_min',
              String(gop),
            ]
          : // ffmpeg's h264_v4l2m2m picks the M2M node by probing for an H.264 encoder.
            ['-c:v', 'h264_v4l2m2m', '-num_capture_buffers', '8'];
      return [
        ...head,
        ...videoIn,
        ...audioIn,
        '-filter_complex',
        graph,
        '-map',
        '[v]',
        ...codec,
        '-g',
        String(gop),
        '-b:v',
        `${kbps}k`,
        '-maxrate',
        `${kbps}k`,
        '-bufsize',
        `${kbps * 2}k`,
        '-r',
        String(c.fps),
        ...audioOut,
        ...fmp4,
        ...motionOut('[m]'),
      ];
    }
  }
}

export interface RunningEncoder {
  readonly pid: number | undefined;
  /** Fragmented MP4 bytes. */
  readonly stdout: Readable;
  readonly exited: Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
  /** Last lines ffmpeg wrote to stderr (for logs and status). */
  stderrTail(): string;
  stop(graceMs?: number): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
}

export function startEncoder(opts: {
  readonly ffmpeg?: string;
  readonly args: readonly string[];
  readonly logger: Logger;
}): RunningEncoder {
  const proc = spawnProcess(opts.ffmpeg ?? 'ffmpeg', opts.args, {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const { stdout, stderr } = proc.child;
  if (!stdout || !stderr) throw new Error('encoder spawned without pipes');
  let tail = '';
  stderr.setEncoding('utf8');
  stderr.on('data', (s: string) => {
    tail = (tail + s).slice(-4096);
    for (const line of s.split('\n'))
      if (line.trim()) opts.logger.debug('ffmpeg', { line: line.trim() });
  });
  return {
    pid: proc.pid,
    stdout,
    exited: proc.exited,
    stderrTail: () => tail,
    stop: (graceMs) => proc.stop(graceMs),
  };
}
