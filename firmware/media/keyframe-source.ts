/**
 * The detector's pictures during a motion event (issue #21): the pipeline
 * tells this source when pictures are wanted (`want(true)` while an event is
 * checked); it then runs a keyframe decoder (hw/encoder/frame-decoder.ts),
 * feeds it the newest fragment's keyframe at once and each new fragment's
 * keyframe after it (keyframe.ts), and stops it when they are no longer
 * wanted. At rest it only keeps a reference to the newest fragment.
 *
 *   const src = new KeyframeSource({ width, height, logger, onPicture, onFailed });
 *   src.onInit(init); src.onFragment(f); src.want(true); ...; src.want(false);
 */
import type { Logger } from '../../base/logger.js';
import type { GreyFrame } from '../../hw/detector/detector.js';
import type { FrameDecoderOptions, RunningFrameDecoder } from '../../hw/encoder/frame-decoder.js';
import { startFrameDecoder } from '../../hw/encoder/frame-decoder.js';
import type { Fragment, InitSegment } from './fmp4.js';
import type { AvcTrack } from './keyframe.js';
import { avcTrackOf, keyframeAnnexB } from './keyframe.js';

export interface KeyframeSourceDeps {
  /** The detector's picture size. */
  readonly width: number;
  readonly height: number;
  readonly logger: Logger;
  readonly ffmpeg?: string;
  /** One decoded picture (a view: the receiver copies what it keeps). */
  readonly onPicture: (frame: GreyFrame) => void;
  /** The decoder died while pictures were wanted (no new try until `want` is set again). */
  readonly onFailed: (reason: string) => void;
  /** The decoder to run (tests); default ffmpeg. */
  readonly start?: (o: FrameDecoderOptions) => RunningFrameDecoder;
}

export class KeyframeSource {
  readonly #d: KeyframeSourceDeps;
  #avc: AvcTrack | undefined;
  #last: Fragment | undefined;
  #decoder: RunningFrameDecoder | undefined;
  #wanted = false;
  #failed = false;
  #pictures = 0;

  constructor(d: KeyframeSourceDeps) {
    this.#d = d;
  }

  /** Pictures decoded so far. */
  get pictures(): number {
    return this.#pictures;
  }

  /** A new stream: its H.264 track (false: none the decoder can take). */
  onInit(init: InitSegment): boolean {
    this.#stopDecoder();
    this.#last = undefined;
    this.#avc = avcTrackOf(init.bytes);
    this.#sync();
    return this.#avc !== undefined;
  }

  onFragment(f: Fragment): void {
    this.#last = f; // a reference: the ring holds the bytes anyway
    this.#push(f);
  }

  /** The stream is gone (encoder exit, unplug, stop): nothing to decode until the next init. */
  lost(): void {
    this.#avc = undefined;
    this.#last = undefined;
    this.#stopDecoder();
  }

  /** Pictures wanted or not; `fresh` (a new event) also allows a new try after a failure. */
  want(on: boolean, fresh = false): void {
    this.#wanted = on;
    if (fresh) this.#failed = false;
    this.#sync();
  }

  #sync(): void {
    if (!this.#wanted || this.#failed || !this.#avc) {
      this.#stopDecoder();
      return;
    }
    if (this.#decoder) return;
    const { width, height } = this.#d;
    const start = this.#d.start ?? startFrameDecoder;
    const dec = start({
      width,
      height,
      logger: this.#d.logger,
      ...(this.#d.ffmpeg !== undefined ? { ffmpeg: this.#d.ffmpeg } : {}),
      onFrame: (data) => {
        if (this.#decoder !== dec) return;
        this.#pictures++;
        this.#d.onPicture({ width, height, data });
      },
    });
    this.#decoder = dec;
    void dec.exited.then((x) => {
      if (this.#decoder !== dec) return; // stopped on purpose
      this.#decoder = undefined;
      this.#failed = true;
      const tail = dec.stderrTail().trim().split('\n').slice(-1).join('');
      this.#d.onFailed(`exited (code ${String(x.exitCode)})${tail ? `: ${tail}` : ''}`);
    });
    // The newest keyframe first: the detector can answer before the next GOP ends.
    if (this.#last) this.#push(this.#last);
  }

  #push(f: Fragment): void {
    const avc = this.#avc;
    if (!this.#decoder || !avc) return;
    const au = keyframeAnnexB(avc, f.bytes);
    if (au) this.#decoder.push(au);
  }

  #stopDecoder(): void {
    const dec = this.#decoder;
    this.#decoder = undefined;
    if (dec) void dec.stop(500);
  }
}
