/**
 * Motion detection on the low-rate grey side stream: frame differencing.
 *
 * Per frame: |frame - previous| > threshold marks a pixel as changed; masked
 * pixels never count; a changed pixel survives the noise filter only if at
 * least `noiseNeighbours` of its 4 neighbours changed too (isolated sensor
 * noise and compression speckle vanish); the largest 4-connected region of
 * surviving pixels must cover `minAreaPct` of the unmasked picture. Motion
 * starts after `triggerFrames` consecutive frames with such a region and ends
 * after `quietMs` without one. Byte-identical frames (an encoder repeating a
 * frame) are skipped rather than counted as "still".
 *
 * Also: a PIR sensor (or any edge source) through a generic `{ onEdge }` port.
 */
import { z } from 'zod';

const rect = z
  .object({
    x: z.number().min(0).max(1),
    y: z.number().min(0).max(1),
    w: z.number().gt(0).max(1),
    h: z.number().gt(0).max(1),
  })
  .refine((r) => r.x + r.w <= 1.0001 && r.y + r.h <= 1.0001, {
    message: 'mask must lie inside the picture',
  });

export const motionConfigSchema = z.object({
  /** Side-stream size and rate. */
  width: z.number().int().min(16).max(640).default(64),
  height: z.number().int().min(12).max(480).default(48),
  fps: z.number().min(0.5).max(15).default(4),
  /** Per-pixel luma difference (0-255) that counts as a change. */
  threshold: z.number().int().min(1).max(255).default(24),
  /** Changed 4-neighbours a changed pixel needs to survive (0 = no noise filter, max 4). */
  noiseNeighbours: z.number().int().min(0).max(4).default(2),
  /** Largest changed region, as % of the unmasked picture, that counts as motion. */
  minAreaPct: z.number().min(0).max(100).default(0.5),
  /** Consecutive motion frames before an event starts. */
  triggerFrames: z.number().int().min(1).max(30).default(2),
  /** Quiet time that ends an event. */
  quietMs: z.number().int().min(0).max(600_000).default(2000),
  /** Areas to ignore (normalised 0..1 rectangles: a tree, a street). */
  masks: z.array(rect).max(32).default([]),
});
export type MotionConfig = z.output<typeof motionConfigSchema>;
export type MotionConfigInput = z.input<typeof motionConfigSchema>;

export interface MotionSample {
  /** Largest region as % of the unmasked area. */
  readonly areaPct: number;
  readonly motion: boolean;
  /** The event state after this frame. */
  readonly active: boolean;
  readonly started: boolean;
  readonly ended: boolean;
}

export function buildMask(cfg: Pick<MotionConfig, 'width' | 'height' | 'masks'>): Uint8Array {
  const { width: W, height: H } = cfg;
  const m = new Uint8Array(W * H);
  for (const r of cfg.masks) {
    const x0 = Math.floor(r.x * W);
    const y0 = Math.floor(r.y * H);
    const x1 = Math.min(W, Math.ceil((r.x + r.w) * W));
    const y1 = Math.min(H, Math.ceil((r.y + r.h) * H));
    for (let y = y0; y < y1; y++) m.fill(1, y * W + x0, y * W + x1);
  }
  return m;
}

/**
 * Working memory of `largestRegion`, reused from frame to frame (a detector makes one): the
 * side stream runs all day, and three fresh arrays per frame are garbage the hub's collector
 * would have to find (issue #19, CPU).
 */
export interface RegionScratch {
  readonly changed: Uint8Array;
  readonly kept: Uint8Array;
  readonly stack: Int32Array;
}

export function regionScratch(pixels: number): RegionScratch {
  return {
    changed: new Uint8Array(pixels),
    kept: new Uint8Array(pixels),
    stack: new Int32Array(pixels),
  };
}

/** Largest changed region (pixels) after threshold, mask and noise filter. Pure but for `scratch`. */
export function largestRegion(
  prev: Uint8Array,
  cur: Uint8Array,
  mask: Uint8Array,
  cfg: Pick<MotionConfig, 'width' | 'height' | 'threshold' | 'noiseNeighbours'>,
  scratch?: RegionScratch,
): number {
  const { width: W, height: H, threshold, noiseNeighbours } = cfg;
  const n = W * H;
  const s = scratch !== undefined && scratch.changed.length === n ? scratch : regionScratch(n);
  const changed = s.changed;
  for (let i = 0; i < n; i++) {
    if (mask[i] === 1) {
      changed[i] = 0;
      continue;
    }
    const d = (cur[i] ?? 0) - (prev[i] ?? 0);
    changed[i] = d > threshold || -d > threshold ? 1 : 0;
  }
  let kept = changed;
  if (noiseNeighbours > 0) {
    kept = s.kept;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = y * W + x;
        if (changed[i] !== 1) {
          kept[i] = 0;
          continue;
        }
        const nb =
          (x > 0 ? (changed[i - 1] ?? 0) : 0) +
          (x < W - 1 ? (changed[i + 1] ?? 0) : 0) +
          (y > 0 ? (changed[i - W] ?? 0) : 0) +
          (y < H - 1 ? (changed[i + W] ?? 0) : 0);
        kept[i] = nb >= noiseNeighbours ? 1 : 0;
      }
    }
  }
  // 4-connected components by iterative flood fill (visited pixels become 2).
  let best = 0;
  const stack = s.stack;
  for (let start = 0; start < n; start++) {
    if (kept[start] !== 1) continue;
    let size = 0;
    let top = 0;
    stack[top++] = start;
    kept[start] = 2;
    while (top > 0) {
      const i = stack[--top] ?? 0;
      size++;
      const x = i % W;
      if (x > 0 && kept[i - 1] === 1) {
        kept[i - 1] = 2;
        stack[top++] = i - 1;
      }
      if (x < W - 1 && kept[i + 1] === 1) {
        kept[i + 1] = 2;
        stack[top++] = i + 1;
      }
      if (i >= W && kept[i - W] === 1) {
        kept[i - W] = 2;
        stack[top++] = i - W;
      }
      if (i + W < n && kept[i + W] === 1) {
        kept[i + W] = 2;
        stack[top++] = i + W;
      }
    }
    if (size > best) best = size;
  }
  return best;
}

export class MotionDetector {
  readonly config: MotionConfig;
  readonly #mask: Uint8Array;
  readonly #usable: number;
  /** The previous frame (the detector's own copy), and the buffer the next one is copied into. */
  #prev: Uint8Array | undefined;
  #spare: Uint8Array | undefined;
  readonly #scratch: RegionScratch;
  #streak = 0;
  #active = false;
  #lastMotionAt = 0;

  constructor(config: MotionConfigInput = {}) {
    this.config = motionConfigSchema.parse(config);
    this.#mask = buildMask(this.config);
    this.#usable = Math.max(1, this.#mask.length - this.#mask.reduce((a, b) => a + b, 0));
    this.#scratch = regionScratch(this.frameBytes);
  }

  get frameBytes(): number {
    return this.config.width * this.config.height;
  }

  get active(): boolean {
    return this.#active;
  }

  /** Forget the previous frame (after an encoder restart the picture may jump). */
  reset(): void {
    this.#spare ??= this.#prev;
    this.#prev = undefined;
    this.#streak = 0;
  }

  /** `frame` is copied (the caller may reuse its buffer): two frame buffers serve all day. */
  push(frame: Uint8Array, at: number): MotionSample | undefined {
    if (frame.length !== this.frameBytes) return undefined;
    const prev = this.#prev;
    if (prev && Buffer.compare(prev, frame) === 0) return undefined; // repeated frame
    const cur = this.#spare ?? new Uint8Array(this.frameBytes);
    cur.set(frame);
    this.#prev = cur;
    this.#spare = prev;
    let areaPct = 0;
    if (prev)
      areaPct =
        (largestRegion(prev, cur, this.#mask, this.config, this.#scratch) / this.#usable) * 100;
    const motion = prev !== undefined && areaPct >= this.config.minAreaPct && areaPct > 0;
    this.#streak = motion ? this.#streak + 1 : 0;
    if (motion) this.#lastMotionAt = at;
    let started = false;
    let ended = false;
    if (!this.#active && this.#streak >= this.config.triggerFrames) {
      this.#active = true;
      started = true;
    } else if (this.#active && !motion && at - this.#lastMotionAt >= this.config.quietMs) {
      this.#active = false;
      ended = true;
    }
    return { areaPct, motion, active: this.#active, started, ended };
  }

  /** Time passes without frames (side stream stalled): lets an event end. */
  tick(at: number): boolean {
    if (this.#active && at - this.#lastMotionAt >= this.config.quietMs) {
      this.#active = false;
      return true;
    }
    return false;
  }
}

/** The PIR port: a GPIO input seen as edges (the GPIO helper's adapters implement it). */
export interface EdgeInput {
  /** `value` is the line level after the edge (1 = motion for an active-high PIR). */
  onEdge(cb: (value: 0 | 1, at: number) => void): () => void;
}
