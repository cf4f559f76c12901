/**
 * The simulated camera's frame clock: every frame carries the wall-clock time
 * at which ffmpeg generated it, drawn into the picture, so a viewer can tell
 * how old a frame is when it reaches the glass (bench/live-glass-to-glass.ts).
 *
 * Format: the time in milliseconds modulo 2^24 (about 4.7 hours), Gray-coded,
 * one bit per square cell along the top-left edge: white = 1 on a black strip.
 * ffmpeg evaluates `time(0)` once per bit (one drawbox per cell); the Gray code
 * makes a millisecond boundary crossed between two of those evaluations cost
 * at most one millisecond instead of a wrong high bit. Cells are large enough
 * to survive H.264 at the bitrates the hub uses.
 */

export const FRAME_CLOCK_BITS = 24;
const MODULUS = 2 ** FRAME_CLOCK_BITS;

export interface FrameClockLayout {
  /** Side of one cell in pixels (cells sit at x = bit * cell, y = 0). */
  readonly cell: number;
  readonly bits: number;
}

/** The cell layout for a picture `width` pixels wide (even cell sides, at least 4 px). */
export function frameClockLayout(width: number): FrameClockLayout {
  const cell = Math.max(4, 2 * Math.floor(width / (2 * (FRAME_CLOCK_BITS + 4))));
  return { cell, bits: FRAME_CLOCK_BITS };
}

/** The ffmpeg filter chain (to append with ',') that draws the clock into each frame. */
export function frameClockFilters(l: FrameClockLayout): string {
  const strip = `drawbox=x=0:y=0:w=${l.cell * l.bits}:h=${l.cell}:color=black:t=fill`;
  const cells = Array.from({ length: l.bits }, (_, k) => {
    // Gray code bit k of b = bit k of b XOR bit k+1 of b
    const bit = `st(0,mod(floor(time(0)*1000),${MODULUS}));mod(floor(ld(0)/${2 ** k})+floor(ld(0)/${2 ** (k + 1)}),2)`;
    return `drawbox=x=${k * l.cell}:y=0:w=${l.cell}:h=${l.cell}:color=white:t=fill:enable='${bit}'`;
  });
  return [strip, ...cells].join(',');
}

/** Where to sample each bit: the centre of its cell. */
export function frameClockSamplePoints(l: FrameClockLayout): { x: number; y: number }[] {
  return Array.from({ length: l.bits }, (_, k) => ({
    x: k * l.cell + l.cell / 2,
    y: l.cell / 2,
  }));
}

/**
 * The clock value (ms modulo 2^24) from the brightness (0..255) sampled at
 * each cell centre, in bit order.
 */
export function decodeFrameClock(samples: readonly number[]): number {
  let gray = 0;
  for (const [k, v] of samples.entries()) if (v >= 128) gray += 2 ** k;
  let b = 0;
  // Gray -> binary, from the top bit down: b_k = g_k XOR b_(k+1)
  let upper = 0;
  for (let k = samples.length - 1; k >= 0; k--) {
    const g = Math.floor(gray / 2 ** k) % 2;
    upper ^= g;
    b += upper * 2 ** k;
  }
  return b;
}

/** The full wall-clock time (ms) of a clock value: the one nearest to `nearMs`. */
export function unwrapFrameClock(value: number, nearMs: number): number {
  const base = nearMs - (((nearMs % MODULUS) + MODULUS) % MODULUS);
  let best = base + value;
  for (const c of [best - MODULUS, best + MODULUS])
    if (Math.abs(c - nearMs) < Math.abs(best - nearMs)) best = c;
  return best;
}
