/**
 * NanoDet output decoding (pure). For each stride (8, 16, 32 input pixels per
 * cell) the network gives, per cell in reading order, the 80 class scores
 * after the sigmoid and, for each box edge (left, top, right, bottom), a
 * distribution over `bins` distances 0..bins-1 in strides (before the
 * softmax). The edge's distance is the distribution's expectation, measured
 * from the cell's centre. Overlapping boxes of one class are reduced by
 * non-maximum suppression. Each cell gives at most one object: its best class.
 */
import type { Box, Detection } from './detector.js';
import { COCO_CLASSES } from './detector.js';

export interface NanoDetLevel {
  /** Input pixels per cell. */
  readonly stride: number;
  /** [cells, classes] */
  readonly scores: Float32Array;
  /** [cells, 4 * bins]: left, top, right, bottom distributions. */
  readonly edges: Float32Array;
}

export interface NanoDetOutput {
  readonly levels: readonly NanoDetLevel[];
  readonly classes: number;
  /** Distance bins per edge. */
  readonly bins: number;
  /** Input size (pixels); the grid of a level is ceil(size / stride). */
  readonly width: number;
  readonly height: number;
}

/** Boxes of one class overlapping more than this (intersection over union) are one object. */
export const NMS_IOU = 0.5;

export function decodeNanoDet(out: NanoDetOutput, minScore: number, maxObjects = 20): Detection[] {
  const { levels, classes, bins, width, height } = out;
  const candidates: Detection[] = [];
  const dist = new Float64Array(4);
  for (const { stride, scores, edges } of levels) {
    const gridW = Math.ceil(width / stride);
    const cells = scores.length / classes;
    for (let i = 0; i < cells; i++) {
      let best = -1;
      let bestScore = minScore;
      for (let c = 0; c < classes && c < COCO_CLASSES.length; c++) {
        const v = scores[i * classes + c] ?? 0;
        if (v >= bestScore) {
          bestScore = v;
          best = c;
        }
      }
      const name = COCO_CLASSES[best];
      if (name === undefined) continue;
      for (let k = 0; k < 4; k++) dist[k] = expectation(edges, (i * 4 + k) * bins, bins) * stride;
      const cx = ((i % gridW) + 0.5) * stride;
      const cy = (Math.floor(i / gridW) + 0.5) * stride;
      const x0 = clamp01((cx - (dist[0] ?? 0)) / width);
      const y0 = clamp01((cy - (dist[1] ?? 0)) / height);
      const x1 = clamp01((cx + (dist[2] ?? 0)) / width);
      const y1 = clamp01((cy + (dist[3] ?? 0)) / height);
      candidates.push({
        class: name,
        score: bestScore,
        box: { x: x0, y: y0, w: x1 - x0, h: y1 - y0 },
      });
    }
  }
  candidates.sort((a, b) => b.score - a.score);
  const kept: Detection[] = [];
  for (const d of candidates) {
    if (kept.length >= maxObjects) break;
    if (kept.some((k) => k.class === d.class && iou(k.box, d.box) > NMS_IOU)) continue;
    kept.push(d);
  }
  return kept;
}

/** The mean of the softmax over `n` logits starting at `at`, in bins. */
function expectation(logits: Float32Array, at: number, n: number): number {
  let max = -Infinity;
  for (let j = 0; j < n; j++) max = Math.max(max, logits[at + j] ?? 0);
  let sum = 0;
  let mean = 0;
  for (let j = 0; j < n; j++) {
    const e = Math.exp((logits[at + j] ?? 0) - max);
    sum += e;
    mean += e * j;
  }
  return mean / sum;
}

export function iou(a: Box, b: Box): number {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / (a.w * a.h + b.w * b.h - inter);
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}
