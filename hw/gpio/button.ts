/**
 * The pairing/reset button: a short press opens the pairing window; holding
 * it for 5 s asks for a factory reset (reported the moment 5 s are reached,
 * while still held, so the LED can confirm before release).
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import type { InputLine } from './gpio.js';

export const LONG_PRESS_MS = 5000;
/** Shorter blips are contact bounce or noise, not a press. */
export const MIN_PRESS_MS = 50;

export interface ButtonEvents {
  'short-press': [];
  'long-press': [];
}

export class ButtonWatcher extends EventEmitter<ButtonEvents> {
  readonly #clock: Clock;
  #downAt: number | undefined;
  #longTimer: { cancel(): void } | undefined;
  #longFired = false;

  /** `pressed` is the line value meaning "pressed" (after active-low handling). */
  constructor(line: InputLine, clock: Clock = SYSTEM_CLOCK, pressed: 0 | 1 = 1) {
    super();
    this.#clock = clock;
    line.watch((v) => {
      if (v === pressed) this.#down();
      else this.#up();
    });
  }

  #down(): void {
    if (this.#downAt !== undefined) return;
    this.#downAt = this.#clock.now();
    this.#longFired = false;
    this.#longTimer = this.#clock.setTimeout(() => {
      this.#longFired = true;
      this.emit('long-press');
    }, LONG_PRESS_MS);
  }

  #up(): void {
    const at = this.#downAt;
    if (at === undefined) return;
    this.#downAt = undefined;
    this.#longTimer?.cancel();
    this.#longTimer = undefined;
    const held = this.#clock.now() - at;
    if (!this.#longFired && held >= MIN_PRESS_MS) this.emit('short-press');
  }
}
