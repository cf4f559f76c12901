/**
 * The status LED. Patterns are data (on/off durations, looped); `StatusLed`
 * plays one at a time on an output line.
 *
 *   locked        slow blink   1 s on, 1 s off       (waiting for the data-partition key)
 *   pairing       fast blink   150 ms on/off          (pairing window open)
 *   idle          short blip every 3 s                (not paired, window closed: press the button)
 *   paired        solid on                            (running, paired)
 *   recording     double blink then pause
 *   error         triple blink then a long pause
 *   factory-reset very fast flicker for 2 s, then off (confirms the 5 s hold)
 */
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import type { OutputLine } from './gpio.js';

export type LedPattern =
  'off' | 'locked' | 'pairing' | 'idle' | 'paired' | 'recording' | 'error' | 'factory-reset';

/** Alternating durations starting with "on"; `loop: false` ends with the LED off. */
export const PATTERNS: Readonly<
  Record<LedPattern, { readonly steps: readonly number[]; readonly loop: boolean }>
> = {
  off: { steps: [], loop: false },
  locked: { steps: [1000, 1000], loop: true },
  pairing: { steps: [150, 150], loop: true },
  idle: { steps: [100, 2900], loop: true },
  paired: { steps: [Number.POSITIVE_INFINITY], loop: false },
  recording: { steps: [120, 120, 120, 1200], loop: true },
  error: { steps: [100, 100, 100, 100, 100, 1500], loop: true },
  'factory-reset': { steps: Array.from({ length: 40 }, () => 50), loop: false },
};

export class StatusLed {
  readonly #line: OutputLine;
  readonly #clock: Clock;
  #pattern: LedPattern = 'off';
  #timer: { cancel(): void } | undefined;
  #gen = 0;

  constructor(line: OutputLine, clock: Clock = SYSTEM_CLOCK) {
    this.#line = line;
    this.#clock = clock;
  }

  get pattern(): LedPattern {
    return this.#pattern;
  }

  show(pattern: LedPattern): void {
    this.#timer?.cancel();
    this.#pattern = pattern;
    this.#gen += 1;
    const gen = this.#gen;
    const { steps, loop } = PATTERNS[pattern];
    const step = (i: number): void => {
      if (gen !== this.#gen) return;
      if (i >= steps.length) {
        if (loop && steps.length > 0) {
          step(0);
          return;
        }
        void this.#line.write(0);
        return;
      }
      void this.#line.write(i % 2 === 0 ? 1 : 0);
      const d = steps[i] ?? 0;
      if (Number.isFinite(d))
        this.#timer = this.#clock.setTimeout(() => {
          step(i + 1);
        }, d);
    };
    if (steps.length === 0) void this.#line.write(0);
    else step(0);
  }
}
