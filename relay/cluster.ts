/**
 * The coordination port: what several relay processes sharing one metadata
 * store need besides the records themselves. The core keeps its state in
 * memory (loaded at start, written through to the `RecordStore`); with one
 * process that memory is the truth. With several (relay/pg-store.ts), each
 * process's memory is a cache of the shared store, kept current by the
 * changes the others publish, and every read-modify-write runs under a lock
 * that spans the processes:
 *
 *  - `exclusive(key, fn)`: `fn` runs while no other process holds `key`, and
 *    only after every change committed before the lock was taken has reached
 *    this process's handlers (so `fn` decides on current state);
 *  - `sync()`: the same catch-up without a lock (a request sees everything
 *    committed before it started: an account created through another process
 *    authenticates here at once);
 *  - `publishLive` / `publishFailure`: live records and failed authentications
 *    reach the other processes (live windows and lockout counters are in memory).
 *
 * `SingleProcess` is the embedded default: no other process, nothing to do.
 */

export interface LiveMessage {
  readonly deviceId: string;
  readonly itemId: string;
  readonly index: number;
  readonly final: boolean;
  readonly data: Buffer;
}

export interface FailureMessage {
  readonly addr: string;
  readonly target: string | undefined;
  readonly at: number;
}

/** What another process changed, delivered in commit order. */
export interface ClusterHandlers {
  /** A record was written (`doc`) or deleted (`undefined`) by another process. */
  record(ns: string, id: string, doc: unknown): void;
  live(m: LiveMessage): void;
  failure(m: FailureMessage): void;
  /** The change feed broke: this process's state can no longer be trusted (stop serving). */
  lost(err: Error): void;
}

export interface Cluster {
  /** Several processes share the store ('single' for the embedded default). */
  readonly name: string;
  exclusive<T>(key: string, fn: () => Promise<T>): Promise<T>;
  sync(): Promise<void>;
  /** Start delivering changes (those made since the store was opened first). */
  start(h: ClusterHandlers): Promise<void>;
  publishLive(m: LiveMessage): Promise<void>;
  publishFailure(m: FailureMessage): Promise<void>;
  /** Failures recorded since `sinceMs` (a starting process counts them too). */
  recentFailures(sinceMs: number): Promise<FailureMessage[]>;
  close(): Promise<void>;
}

export class SingleProcess implements Cluster {
  readonly name = 'single';
  exclusive<T>(_key: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }
  sync(): Promise<void> {
    return Promise.resolve();
  }
  start(): Promise<void> {
    return Promise.resolve();
  }
  publishLive(): Promise<void> {
    return Promise.resolve();
  }
  publishFailure(): Promise<void> {
    return Promise.resolve();
  }
  recentFailures(): Promise<FailureMessage[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
