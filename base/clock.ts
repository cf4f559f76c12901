/**
 * The time port for code that waits: "now" in milliseconds and one-shot timers
 * that can be cancelled. Tests drive it by hand (test/fixtures/manual-clock.ts).
 * Not the wall clock of the device (hw/clock/system-clock.ts sets that).
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return {
      cancel: () => {
        clearTimeout(t);
      },
    };
  },
};
