/**
 * When the companion last reached its relay, and since when it has not: the
 * viewer's status strip ("last contact 10:02:13", "relay unreachable since
 * 10:05:40"). The Syncer reports every pass and long-poll; the first failure
 * after a success starts the outage, the next success ends it.
 */
export interface RelayContactStatus {
  /** The last answer from the relay (this device's clock), if any. */
  readonly lastContactAt: number | null;
  /** Set while the relay does not answer: when the first failed attempt was. */
  readonly unreachableSince: number | null;
  /** Why the last attempt failed (one line), while unreachable. */
  readonly reason: string | null;
}

export class RelayContact {
  readonly #now: () => number;
  #last: number | null = null;
  #since: number | null = null;
  #reason: string | null = null;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  reached(): void {
    this.#last = this.#now();
    this.#since = null;
    this.#reason = null;
  }

  failed(reason: string): void {
    this.#since ??= this.#now();
    this.#reason = reason;
  }

  status(): RelayContactStatus {
    return { lastContactAt: this.#last, unreachableSince: this.#since, reason: this.#reason };
  }
}
