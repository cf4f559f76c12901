/**
 * Small async helpers shared by the long-running loops (uplink, config
 * channel, storage unlock, OTA agent) and the MLS state owners.
 */

/**
 * Read `signal.aborted` through a call: the flag changes while a loop awaits,
 * and TypeScript's control-flow narrowing cannot see that.
 */
export function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

/**
 * Wait `ms`, or less if `signal` aborts first. Never rejects: loops check
 * `isAborted(signal)` afterwards and wind down on their own terms.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A FIFO mutex: `run` calls execute one at a time, in call order. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
