/**
 * The detector's on-demand frame source (issue #21): an ffmpeg that reads
 * H.264 keyframes (Annex B access units, firmware/media/keyframe.ts) on stdin
 * and writes each one back as a grey `width` x `height` picture on stdout.
 * The hub starts it when motion or the PIR fires and stops it when the event
 * ends, so at rest it costs nothing; it decodes one picture per GOP (2 a
 * second at the 0.5 s default), single-threaded, and writes each picture out
 * as soon as it is decoded (a few ms after the access unit arrives).
 *
 *   const dec = startFrameDecoder({ width: 384, height: 288, logger, onFrame });
 *   dec.push(accessUnit); ...; await dec.stop();
 */
import type { Logger } from '../../base/logger.js';
import { spawnProcess } from '../os/run.js';

export interface FrameDecoderOptions {
  readonly ffmpeg?: string;
  readonly width: number;
  readonly height: number;
  readonly logger: Logger;
  /** One decoded picture (`width * height` grey bytes; a view: copy it to keep it). */
  readonly onFrame: (frame: Uint8Array) => void;
}

export interface RunningFrameDecoder {
  readonly pid: number | undefined;
  /** One access unit; dropped when the decoder is not keeping up or has exited. */
  push(accessUnit: Uint8Array): void;
  readonly exited: Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
  /** Last lines ffmpeg wrote to stderr. */
  stderrTail(): string;
  /** Pictures written to the decoder, and dropped because its input was still full. */
  readonly stats: { readonly pushed: number; readonly dropped: number };
  stop(graceMs?: number): Promise<unknown>;
}

export function frameDecoderArgs(width: number, height: number): string[] {
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    '-nostdin',
    // One thread and low delay: frame threading would hold each picture back
    // until the next ones arrive, which here is one GOP each.
    '-threads',
    '1',
    '-flags',
    'low_delay',
    // Every access unit carries its SPS and PPS: no probing, which would
    // swallow the event's first keyframe.
    '-nofind_stream_info',
    '-f',
    'h264',
    '-i',
    'pipe:0',
    '-map',
    '0:v:0',
    '-vf',
    `scale=${width}:${height}:flags=area,format=gray`,
    '-fps_mode',
    'passthrough',
    // One PGM image per picture: ffmpeg 5.1's rawvideo output held each
    // picture back until the next one (measured: one GOP late); image2pipe
    // writes each image out as soon as it is encoded.
    '-f',
    'image2pipe',
    '-c:v',
    'pgm',
    'pipe:1',
  ];
}

/** The fixed header ffmpeg's PGM encoder writes before each `width` x `height` grey image. */
export function pgmHeader(width: number, height: number): Buffer {
  return Buffer.from(`P5\n${width} ${height}\n255\n`, 'latin1');
}

export function startFrameDecoder(o: FrameDecoderOptions): RunningFrameDecoder {
  const proc = spawnProcess(o.ffmpeg ?? 'ffmpeg', frameDecoderArgs(o.width, o.height), {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const { stdin, stdout, stderr } = proc.child;
  if (!stdin || !stdout || !stderr) throw new Error('frame decoder spawned without pipes');
  const header = pgmHeader(o.width, o.height);
  const frameBytes = header.length + o.width * o.height;
  let pending: Buffer[] = [];
  let len = 0;
  stdout.on('data', (chunk: Buffer) => {
    pending.push(chunk);
    len += chunk.length;
    if (len < frameBytes) return;
    const all = Buffer.concat(pending);
    let p = 0;
    for (; p + frameBytes <= all.length; p += frameBytes) {
      if (!all.subarray(p, p + header.length).equals(header)) {
        // Not the picture size asked for: a broken stream, stop reading it.
        o.logger.warn('frame decoder wrote an unexpected image header; stopping it');
        stdout.destroy();
        void proc.stop(500);
        return;
      }
      o.onFrame(all.subarray(p + header.length, p + frameBytes));
    }
    pending = p < all.length ? [all.subarray(p)] : [];
    len = all.length - p;
  });
  let tail = '';
  stderr.setEncoding('utf8');
  stderr.on('data', (s: string) => {
    tail = (tail + s).slice(-2048);
    for (const line of s.split('\n'))
      if (line.trim()) o.logger.debug('ffmpeg', { line: line.trim() });
  });
  // A decoder that exits (or is stopped) while a write is pending must not throw.
  stdin.on('error', () => undefined);
  let open = true;
  void proc.exited.then(() => {
    open = false;
  });
  const stats = { pushed: 0, dropped: 0 };
  return {
    pid: proc.pid,
    push(au) {
      // Never queue pictures behind a slow decoder: the newest one matters.
      if (!open || stdin.writableNeedDrain) {
        stats.dropped++;
        return;
      }
      stats.pushed++;
      stdin.write(au);
    },
    exited: proc.exited,
    stderrTail: () => tail,
    stats,
    stop: (graceMs) => {
      open = false;
      stdin.end();
      return proc.stop(graceMs ?? 1000);
    },
  };
}
