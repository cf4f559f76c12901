/**
 * Small async helpers shared by the long-running loops (uplink, config
 * channel, storage unlock, OTA agent) and the MLS state owners.
 */

/**
 * Read `signal.aborted` through a call: the flag changes while a loop awaits,
 * and TypeScript's control-flow narrowing cannot see that.
 */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted ?? false;
}

/**
 * Resolve once `signal` aborts (at once if it already has). Never rejects: for
 * effects that have nothing left to do but wait for their own cancellation.
 */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    signal.addEventListener(
      'abort',
      () => {
        resolve();
      },
      { once: true },
    );
  });
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

/**
 * Wait `ms`; rejects as soon as `signal` aborts, with the signal's reason (an
 * `AbortError` DOMException unless the aborter gave one). For steps that must
 * not carry on after a cancellation.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
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
