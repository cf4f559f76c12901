/**
 * CenterNet output decoding (pure). The network gives, on a grid 4x coarser
 * than its input, a per-class heatmap of object centres (after the sigmoid,
 * channel-major [C, H, W]) and four box edges per cell in input pixels
 * (left, top, right, bottom distances from the cell's centre, [4, H, W]).
 * An object is a cell that is the maximum of its 3x3 neighbourhood in its
 * class channel and scores at least `minScore` (the peak test replaces NMS).
 */
import type { Detection } from './detector.js';
import { COCO_CLASSES } from './detector.js';

/** Grid cell size in input pixels. */
export const CENTERNET_STRIDE = 4;

export interface CenterNetOutput {
  /** [classes, gridH, gridW] */
  readonly heat: Float32Array;
  /** [4, gridH, gridW]: left, top, right, bottom (input pixels). */
  readonly edges: Float32Array;
  readonly classes: number;
  readonly gridH: number;
  readonly gridW: number;
}

export function decodeCenterNet(
  out: CenterNetOutput,
  minScore: number,
  maxObjects = 20,
): Detection[] {
  const { heat, edges, classes, gridH: H, gridW: W } = out;
  const plane = H * W;
  const inW = W * CENTERNET_STRIDE;
  const inH = H * CENTERNET_STRIDE;
  const found: Detection[] = [];
  for (let c = 0; c < classes; c++) {
    const name = COCO_CLASSES[c];
    if (name === undefined) break;
    const base = c * plane;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = heat[base + y * W + x] ?? 0;
        if (v < minScore || !isPeak(heat, base, W, H, x, y, v)) continue;
        const i = y * W + x;
        const cx = x * CENTERNET_STRIDE;
        const cy = y * CENTERNET_STRIDE;
        const x0 = clamp01((cx - (edges[i] ?? 0)) / inW);
        const y0 = clamp01((cy - (edges[plane + i] ?? 0)) / inH);
        const x1 = clamp01((cx + (edges[2 * plane + i] ?? 0)) / inW);
        const y1 = clamp01((cy + (edges[3 * plane + i] ?? 0)) / inH);
        found.push({ class: name, score: v, box: { x: x0, y: y0, w: x1 - x0, h: y1 - y0 } });
      }
    }
  }
  found.sort((a, b) => b.score - a.score);
  return found.slice(0, maxObjects);
}

function isPeak(
  heat: Float32Array,
  base: number,
  W: number,
  H: number,
  x: number,
  y: number,
  v: number,
): boolean {
  for (let dy = -1; dy <= 1; dy++) {
    const yy = y + dy;
    if (yy < 0 || yy >= H) continue;
    for (let dx = -1; dx <= 1; dx++) {
      const xx = x + dx;
      if ((dx === 0 && dy === 0) || xx < 0 || xx >= W) continue;
      const n = heat[base + yy * W + xx] ?? 0;
      // Ties go to the first cell in reading order, so a flat plateau gives one object.
      if (n > v || (n === v && (dy < 0 || (dy === 0 && dx < 0)))) return false;
    }
  }
  return true;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}
