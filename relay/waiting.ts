/**
 * Concurrency helpers of the relay core: a per-key mutex that serialises the
 * writes of one device, and a change feed that wakes long-polls of one device
 * (mailbox and live readers alike) whenever something of that device changed.
 */

/**
 * Serializes async work per key: within this process, then (with several relay
 * processes on one store) across processes through `exclusive`, entered by one
 * holder of this process at a time so a process holds at most one shared lock per key.
 */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();
  readonly #exclusive: (<T>(key: string, fn: () => Promise<T>) => Promise<T>) | undefined;

  constructor(exclusive?: <T>(key: string, fn: () => Promise<T>) => Promise<T>) {
    this.#exclusive = exclusive;
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = prev.then(() => mine);
    this.#tails.set(key, tail);
    await prev;
    try {
      return await (this.#exclusive ? this.#exclusive(key, fn) : fn());
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

/** Wake-ups per device: `notify` releases every current waiter of that device. */
export class ChangeFeed {
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #now: () => number;
  readonly #maxWaitMs: number;
  #closed = false;

  constructor(now: () => number, maxWaitMs: number) {
    this.#now = now;
    this.#maxWaitMs = maxWaitMs;
  }

  notify(deviceId: string): void {
    const set = this.#waiters.get(deviceId);
    if (!set) return;
    this.#waiters.delete(deviceId);
    for (const fn of set) fn();
  }

  /** Resolve on the next change for `deviceId`, after `ms`, or on abort. */
  #waitChange(deviceId: string, ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || this.#closed || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      let set = this.#waiters.get(deviceId);
      if (!set) {
        set = new Set();
        this.#waiters.set(deviceId, set);
      }
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#waiters.get(deviceId)?.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done);
      set.add(done);
    });
  }

  /** Poll `check` until it yields a value or `waitMs` (capped) passes. */
  async longPoll<T>(
    deviceId: string,
    waitMs: number,
    signal: AbortSignal | undefined,
    check: () => T | undefined,
  ): Promise<T | undefined> {
    const deadline = this.#now() + Math.min(waitMs, this.#maxWaitMs);
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const left = deadline - this.#now();
      if (left <= 0 || this.#closed || signal?.aborted) return undefined;
      await this.#waitChange(deviceId, left, signal);
    }
  }

  close(): void {
    this.#closed = true;
    for (const id of [...this.#waiters.keys()]) this.notify(id);
  }
}
