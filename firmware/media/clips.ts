/**
 * Event clips: a ring buffer of whole GOPs (fMP4 fragments) gives the
 * pre-roll; on motion the clip opens as a sealed item, gets the init segment
 * and the pre-roll at once, then every new fragment as it arrives (sealed
 * chunks stream while recording); it closes once motion has been quiet for the
 * post-roll, or at the maximum length (a new clip follows if motion goes on).
 * If the encoder dies mid-clip, the clip is closed at the last whole fragment:
 * what was sealed is a valid, playable fMP4.
 */
import { z } from 'zod';
import type { Logger } from '../../base/logger.js';
import type { ItemSealer, SealedItemWriter } from '../items.js';
import { reasonOf } from '../../base/errors.js';
import type { Fragment, InitSegment } from './fmp4.js';
import { clipOrigin, rebaseFragment } from './fmp4.js';

/** Objects the detector saw in a clip: best score per class (firmware/media/detection.ts). */
export interface ClipObject {
  readonly class: string;
  readonly score: number;
}

/** The sealed end-record note of a clip with objects: `objects=person:0.82,car:0.51`. */
export function objectsNote(objects: readonly ClipObject[]): string {
  if (objects.length === 0) return '';
  return `objects=${objects.map((o) => `${o.class}:${o.score.toFixed(2)}`).join(',')}`;
}

export const clipConfigSchema = z.object({
  preRollS: z.number().min(0).max(30).default(3),
  postRollS: z.number().min(0).max(120).default(3),
  maxClipS: z.number().min(2).max(3600).default(60),
  /** Upper bound on ring memory (whole GOPs are dropped beyond it). */
  ringMaxBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(256 * 1024 * 1024)
    .default(16 * 1024 * 1024),
  thumbnails: z.boolean().default(true),
});
export type ClipConfig = z.output<typeof clipConfigSchema>;
export type ClipConfigInput = z.input<typeof clipConfigSchema>;

/** Whole fragments covering at least the pre-roll. */
export class GopRing {
  readonly #frags: Fragment[] = [];
  #bytes = 0;
  readonly #keepS: number;
  readonly #maxBytes: number;

  constructor(keepS: number, maxBytes: number) {
    this.#keepS = keepS;
    this.#maxBytes = maxBytes;
  }

  push(f: Fragment): void {
    const last = this.#frags[this.#frags.length - 1];
    // A gap in sequence numbers (lost data) breaks continuity: start over.
    if (last && f.sequence !== last.sequence + 1) this.clear();
    this.#frags.push(f);
    this.#bytes += f.bytes.length;
    for (;;) {
      const oldest = this.#frags[0];
      if (!oldest || this.#frags.length === 1) break;
      const rest = this.durationS - oldest.durationS;
      if (rest >= this.#keepS || this.#bytes > this.#maxBytes) {
        this.#frags.shift();
        this.#bytes -= oldest.bytes.length;
      } else break;
    }
  }

  clear(): void {
    this.#frags.length = 0;
    this.#bytes = 0;
  }

  get durationS(): number {
    return this.#frags.reduce((s, f) => s + f.durationS, 0);
  }

  get bytes(): number {
    return this.#bytes;
  }

  get length(): number {
    return this.#frags.length;
  }

  /** The newest fragments covering at least `seconds` (all of them if fewer), oldest first. */
  preRoll(seconds: number): Fragment[] {
    if (seconds <= 0) return [];
    const out: Fragment[] = [];
    let s = 0;
    for (let i = this.#frags.length - 1; i >= 0 && s < seconds; i--) {
      const f = this.#frags[i];
      if (!f) break;
      out.unshift(f);
      s += f.durationS;
    }
    // Start on a keyframe (frag_keyframe guarantees it; be safe with other encoders).
    while (out.length > 0 && out[0]?.keyframe !== true) out.shift();
    return out;
  }
}

export type ClipEvent =
  | {
      type: 'clip-started';
      itemId: string;
      epoch: bigint;
      at: number;
      preRollS: number;
      reason: string;
      /** What the detector had seen when the clip opened (best score per class). */
      objects?: readonly ClipObject[];
    }
  | { type: 'clip-first-chunk'; itemId: string; at: number }
  | {
      type: 'clip-closed';
      itemId: string;
      at: number;
      durationMs: number;
      fragments: number;
      bytes: number;
      why: string;
      objects?: readonly ClipObject[];
    }
  | { type: 'clip-failed'; itemId: string | undefined; at: number; reason: string }
  | { type: 'thumbnail'; itemId: string; at: number; bytes: number; forClip: string };

/** Turns an init segment + one fragment into a JPEG. */
export type Thumbnailer = (init: InitSegment, fragment: Fragment) => Promise<Uint8Array>;

interface OpenClip {
  writer: Promise<SealedItemWriter | undefined>;
  itemId: string | undefined;
  startedAt: number;
  writtenS: number;
  fragments: number;
  bytes: number;
  firstChunkSeen: boolean;
  thumbnailPending: boolean;
  failed: boolean;
  /** Decode time of the clip's first fragment: the clip's timeline starts there. */
  baseTicks: number | undefined;
  /** Best score per class seen during the clip (sealed in the end record). */
  objects: ClipObject[];
}

export interface ClipRecorderDeps {
  readonly sealer: ItemSealer;
  readonly logger: Logger;
  readonly config: ClipConfigInput;
  readonly onEvent?: (e: ClipEvent) => void;
  readonly thumbnailer?: Thumbnailer;
  readonly now?: () => number;
}

export class ClipRecorder {
  readonly config: ClipConfig;
  readonly ring: GopRing;
  readonly #d: ClipRecorderDeps;
  readonly #now: () => number;
  #init: InitSegment | undefined;
  #clip: OpenClip | undefined;
  #motionActive = false;
  #motionEndedAt = 0;
  /** Serialises every sealer call: chunks must reach the sealer in order. */
  #chain: Promise<void> = Promise.resolve();
  #clipsClosed = 0;
  #thumbnails = 0;
  /** Motion arrived with no stream yet (encoder starting/restarting): open on the next GOP. */
  #waitingForStream: string | undefined;

  constructor(d: ClipRecorderDeps) {
    this.#d = d;
    this.config = clipConfigSchema.parse(d.config);
    this.#now = d.now ?? Date.now;
    // Whole GOPs covering exactly the pre-roll: the ring drops its oldest GOP only while the
    // rest still covers `preRollS`, so `preRoll(preRollS)` always finds it; the GOP in progress
    // at a trigger comes after the pre-roll. (An extra GOP here, as before issue #19's session
    // 11, was ~0.5 MB of video at 4 Mbit/s held all day and never written.)
    this.ring = new GopRing(this.config.preRollS, this.config.ringMaxBytes);
  }

  get recording(): boolean {
    return this.#clip !== undefined;
  }

  get currentItemId(): string | undefined {
    return this.#clip?.itemId;
  }

  get stats(): { clips: number; thumbnails: number } {
    return { clips: this.#clipsClosed, thumbnails: this.#thumbnails };
  }

  /** Resolves when every queued sealer call has finished. */
  idle(): Promise<void> {
    return this.#chain;
  }

  #enqueue(op: () => Promise<void>): void {
    this.#chain = this.#chain.then(op).catch((e: unknown) => {
      this.#d.logger.error('clip pipeline step failed', { err: e });
    });
  }

  onInit(init: InitSegment): void {
    this.#init = init;
    this.ring.clear();
  }

  onFragment(f: Fragment): void {
    // Motion began before the encoder had a stream: the clip starts with this GOP, even if the
    // motion has ended meanwhile (someone who walked past while the encoder started is still an
    // event): then the post-roll counts from this first GOP. A stream that comes more than a
    // clip's length after the motion ended records nothing.
    if (!this.#clip && this.#waitingForStream !== undefined && this.#init) {
      const reason = this.#waitingForStream;
      this.#waitingForStream = undefined;
      const now = this.#now();
      if (this.#motionActive) this.#open(reason, 0);
      else if (now - this.#motionEndedAt <= this.config.maxClipS * 1000) {
        this.#motionEndedAt = now;
        this.#open(reason, 0);
      } else
        this.#d.logger.info('the stream came too long after the motion ended: no clip', {
          reason,
          endedMsAgo: now - this.#motionEndedAt,
        });
    }
    this.ring.push(f);
    const clip = this.#clip;
    if (!clip) return;
    this.#write(clip, f);
    if (clip.thumbnailPending && f.keyframe) {
      clip.thumbnailPending = false;
      this.#thumbnail(clip, f);
    }
    const now = this.#now();
    if (clip.writtenS >= this.config.maxClipS) {
      this.#close('max-length');
      // Motion still going: the next clip starts with the next fragment.
      if (this.#motionActive) this.#open('continued', 0);
    } else if (!this.#motionActive && now - this.#motionEndedAt >= this.config.postRollS * 1000) {
      this.#close('post-roll elapsed');
    }
  }

  /** `objects`: what the detector saw (a clip gated by object class). */
  motionStarted(reason: string, objects: readonly ClipObject[] = []): void {
    this.#motionActive = true;
    if (!this.#clip) this.#open(reason, this.config.preRollS, objects);
    else this.noteObjects(objects);
  }

  /** The detector saw more (a new class, a better score) while the clip is open. */
  noteObjects(objects: readonly ClipObject[]): void {
    const clip = this.#clip;
    if (!clip) return;
    const best = new Map(clip.objects.map((o) => [o.class, o.score]));
    for (const o of objects) best.set(o.class, Math.max(best.get(o.class) ?? 0, o.score));
    clip.objects = [...best]
      .map(([c, score]) => ({ class: c, score }))
      .sort((a, b) => b.score - a.score);
  }

  motionEnded(): void {
    // a clip waiting for the stream still opens when it comes (onFragment)
    if (!this.#motionActive) return;
    this.#motionActive = false;
    this.#motionEndedAt = this.#now();
  }

  /** The encoder process is gone: close the clip at its last whole fragment. */
  encoderLost(reason: string): void {
    if (this.#clip) this.#close(`encoder lost: ${reason}`);
    this.#init = undefined;
    this.ring.clear();
  }

  /** Close any open clip (shutdown). */
  async stop(): Promise<void> {
    if (this.#clip) this.#close('stopped');
    await this.#chain;
  }

  #open(reason: string, preRollS: number, objects: readonly ClipObject[] = []): void {
    const init = this.#init;
    if (!init) {
      // No stream yet (encoder starting or restarting): the clip opens with the first GOP.
      this.#d.logger.info('motion before the encoder produced a stream; clip waits for it', {
        reason,
      });
      this.#waitingForStream = reason;
      return;
    }
    const pre = preRollS > 0 ? this.ring.preRoll(preRollS) : [];
    const startedAt = Math.round(
      pre[0] ? pre[0].receivedAt - pre[0].durationS * 1000 : this.#now(),
    );
    const clip: OpenClip = {
      writer: Promise.resolve(undefined),
      itemId: undefined,
      startedAt,
      writtenS: 0,
      fragments: 0,
      bytes: 0,
      firstChunkSeen: false,
      thumbnailPending: this.config.thumbnails,
      failed: false,
      baseTicks: undefined,
      objects: [...objects],
    };
    this.#clip = clip;
    let resolveWriter: (w: SealedItemWriter | undefined) => void = () => undefined;
    clip.writer = new Promise((r) => (resolveWriter = r));
    this.#enqueue(async () => {
      try {
        const w = await this.#d.sealer.begin({
          kind: 'clip',
          startedAt,
          codec: `video/mp4; codecs="${init.codec}"`,
        });
        clip.itemId = w.itemId;
        resolveWriter(w);
        this.#d.logger.info('clip started', {
          itemId: w.itemId,
          epoch: w.epoch,
          reason,
          preRollS: sum(pre),
        });
        this.#d.onEvent?.({
          type: 'clip-started',
          itemId: w.itemId,
          epoch: w.epoch,
          at: this.#now(),
          preRollS: sum(pre),
          reason,
          ...(objects.length > 0 ? { objects } : {}),
        });
        await w.write(init.bytes);
      } catch (e) {
        resolveWriter(undefined);
        this.#fail(clip, e);
      }
    });
    for (const f of pre) this.#write(clip, f);
    // With the pre-roll written, a thumbnail waits for the first fragment after the trigger.
  }

  #write(clip: OpenClip, f: Fragment): void {
    // One origin for every track (the earliest start of the first fragment): A/V stay in sync.
    clip.baseTicks ??= clipOrigin(f);
    const bytes = rebaseFragment(f, clip.baseTicks);
    clip.writtenS += f.durationS;
    clip.fragments++;
    clip.bytes += f.bytes.length;
    this.#enqueue(async () => {
      const w = await clip.writer;
      if (!w || clip.failed) return;
      try {
        await w.write(bytes);
        if (!clip.firstChunkSeen) {
          clip.firstChunkSeen = true;
          this.#d.onEvent?.({ type: 'clip-first-chunk', itemId: w.itemId, at: this.#now() });
        }
      } catch (e) {
        this.#fail(clip, e);
      }
    });
  }

  #close(why: string): void {
    const clip = this.#clip;
    if (!clip) return;
    this.#clip = undefined;
    this.#enqueue(async () => {
      const w = await clip.writer;
      if (!w || clip.failed) return;
      const durationMs = Math.round(clip.writtenS * 1000);
      try {
        const note = objectsNote(clip.objects);
        await (note ? w.close(durationMs, note) : w.close(durationMs));
        this.#clipsClosed++;
        this.#d.logger.info('clip closed', {
          itemId: w.itemId,
          durationMs,
          fragments: clip.fragments,
          why,
        });
        this.#d.onEvent?.({
          type: 'clip-closed',
          itemId: w.itemId,
          at: this.#now(),
          durationMs,
          fragments: clip.fragments,
          bytes: clip.bytes,
          why,
          ...(clip.objects.length > 0 ? { objects: clip.objects } : {}),
        });
      } catch (e) {
        this.#fail(clip, e);
      }
    });
  }

  #fail(clip: OpenClip, e: unknown): void {
    if (clip.failed) return;
    clip.failed = true;
    const reason = reasonOf(e);
    this.#d.logger.error('clip failed', { itemId: clip.itemId, reason });
    this.#d.onEvent?.({ type: 'clip-failed', itemId: clip.itemId, at: this.#now(), reason });
    void clip.writer.then((w) => w?.abort(reason)).catch(() => undefined);
    if (this.#clip === clip) this.#clip = undefined;
  }

  #thumbnail(clip: OpenClip, f: Fragment): void {
    const init = this.#init;
    const make = this.#d.thumbnailer;
    if (!init || !make) return;
    // Not on the clip's chain: a slow decode must not delay the clip's chunks.
    void (async () => {
      try {
        const jpeg = await make(init, f);
        const clipId = (await clip.writer)?.itemId;
        const forClip = clipId ?? 'unknown';
        let done: () => void = () => undefined;
        const finished = new Promise<void>((r) => (done = r));
        this.#enqueue(async () => {
          try {
            const w = await this.#d.sealer.begin({
              kind: 'thumbnail',
              startedAt: f.receivedAt,
              codec: 'image/jpeg',
              // one epoch advance per event: the thumbnail rides in its clip's epoch
              ...(clipId === undefined ? {} : { sameEpochAs: clipId }),
            });
            await w.write(jpeg);
            await w.close(0);
            this.#thumbnails++;
            this.#d.onEvent?.({
              type: 'thumbnail',
              itemId: w.itemId,
              at: this.#now(),
              bytes: jpeg.length,
              forClip,
            });
          } finally {
            done();
          }
        });
        await finished;
      } catch (e) {
        this.#d.logger.warn('thumbnail failed', { reason: reasonOf(e) });
      }
    })();
  }
}

function sum(frags: readonly Fragment[]): number {
  return Math.round(frags.reduce((s, f) => s + f.durationS, 0) * 1000) / 1000;
}
