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

/** Largest changed region (pixels) after threshold, mask and noise filter. Pure. */
export function largestRegion(
  prev: Uint8Array,
  cur: Uint8Array,
  mask: Uint8Array,
  cfg: Pick<MotionConfig, 'width' | 'height' | 'threshold' | 'noiseNeighbours'>,
): number {
  const { width: W, height: H, threshold, noiseNeighbours } = cfg;
  const n = W * H;
  const changed = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (mask[i] === 1) continue;
    const d = (cur[i] ?? 0) - (prev[i] ?? 0);
    if (d > threshold || -d > threshold) changed[i] = 1;
  }
  let kept = changed;
  if (noiseNeighbours > 0) {
    kept = new Uint8Array(n);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const i = y * W + x;
        if (changed[i] !== 1) continue;
        const nb =
          (x > 0 ? (changed[i - 1] ?? 0) : 0) +
          (x < W - 1 ? (changed[i + 1] ?? 0) : 0) +
          (y > 0 ? (changed[i - W] ?? 0) : 0) +
          (y < H - 1 ? (changed[i + W] ?? 0) : 0);
        if (nb >= noiseNeighbours) kept[i] = 1;
      }
    }
  }
  // 4-connected components by iterative flood fill.
  let best = 0;
  const stack = new Int32Array(n);
  for (let s = 0; s < n; s++) {
    if (kept[s] !== 1) continue;
    let size = 0;
    let top = 0;
    stack[top++] = s;
    kept[s] = 2;
    while (top > 0) {
      const i = stack[--top] ?? 0;
      size++;
      const x = i % W;
      const push = (j: number): void => {
        if (kept[j] === 1) {
          kept[j] = 2;
          stack[top++] = j;
        }
      };
      if (x > 0) push(i - 1);
      if (x < W - 1) push(i + 1);
      if (i >= W) push(i - W);
      if (i + W < n) push(i + W);
    }
    if (size > best) best = size;
  }
  return best;
}

export class MotionDetector {
  readonly config: MotionConfig;
  readonly #mask: Uint8Array;
  readonly #usable: number;
  #prev: Uint8Array | undefined;
  #streak = 0;
  #active = false;
  #lastMotionAt = 0;

  constructor(config: MotionConfigInput = {}) {
    this.config = motionConfigSchema.parse(config);
    this.#mask = buildMask(this.config);
    this.#usable = Math.max(1, this.#mask.length - this.#mask.reduce((a, b) => a + b, 0));
  }

  get frameBytes(): number {
    return this.config.width * this.config.height;
  }

  get active(): boolean {
    return this.#active;
  }

  /** Forget the previous frame (after an encoder restart the picture may jump). */
  reset(): void {
    this.#prev = undefined;
    this.#streak = 0;
  }

  push(frame: Uint8Array, at: number): MotionSample | undefined {
    if (frame.length !== this.frameBytes) return undefined;
    const prev = this.#prev;
    if (prev && Buffer.compare(prev, frame) === 0) return undefined; // repeated frame
    this.#prev = frame;
    let areaPct = 0;
    if (prev) areaPct = (largestRegion(prev, frame, this.#mask, this.config) / this.#usable) * 100;
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
