/**
 * The hub's uplink: a `CiphertextSink` that carries sealed items to the relay.
 *
 *  - clips and thumbnails go through the durable queue (firmware/uplink/queue.ts):
 *    `append` resolves once the bytes are on the hub's disk; one sender drains
 *    the queue oldest first with retries and exponential backoff. The relay's
 *    appends are offset-checked and idempotent, so a segment resent after a
 *    crash (sent, but not yet removed here) is not a duplicate for the phone.
 *  - live records go through a bounded in-memory queue with its own sender.
 *    When the relay is slow or away the queue fills and the oldest live frames
 *    are dropped (never a live item's header or its end record, never a clip).
 */
import { VigilError, reasonOf } from '../../base/errors.js';
import type { HttpRequester } from '../../base/http.js';
import { isAborted, pause } from '../../base/async.js';
import type { DurableFs } from '../../hw/os/fs.js';
import type { CiphertextSink } from '../items.js';
import type { ItemKind } from '../../protocol/items.js';
import type { Logger } from '../../base/logger.js';
import { GROUP_FOR_ITEM } from '../../protocol/mls-profile.js';
import { RelayClient, RelayHttpError } from '../../protocol/relay-client.js';
import { UplinkQueue } from './queue.js';
import { planBacklogDrops, type BacklogDrop, type BacklogLimits } from './backlog.js';
import type { Clock } from '../../base/clock.js';
import type { NoticeMessage } from '../../protocol/e2ee-frames.js';
import type { PrivacyPlan } from './privacy.js';
import { StreamSender, type StreamPeers, type StreamStatus, type Lane } from './stream.js';

export interface UplinkCredentials {
  readonly deviceId: string;
  /** The relay bearer token (`d.<deviceId>.<secret>`). */
  readonly token: string;
}

export interface UplinkOptions {
  /**
   * The relay and the device account there. Undefined: not known yet (the relay meeting at
   * the end of pairing is still being retried): items queue durably, and `connect()` names
   * the account before `start()`.
   */
  readonly relayUrl: string | undefined;
  readonly credentials: UplinkCredentials | undefined;
  /** Directory of the durable queue (inside the LUKS volume on a hub). */
  readonly stateDir: string;
  readonly fs: DurableFs;
  readonly logger: Logger;
  /** First retry delay and the cap (ms). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Live records kept in memory while the relay is slow (bytes). */
  readonly liveQueueBytes?: number;
  /** The HTTP client towards the relay (default base/http.ts's). */
  readonly http?: HttpRequester;
  /** Per-request timeout (ms). */
  readonly requestTimeoutMs?: number;
  /**
   * Bounds of the durable backlog (firmware/uplink/backlog.ts), applied before each
   * queued write and by `enforceBacklog()`; `onDropped` hears every dropped item
   * (the hub tells the phones at their next heartbeat). Undefined: unbounded.
   */
  readonly backlog?: BacklogLimits & {
    readonly onDropped?: (drops: readonly BacklogDrop[]) => void | Promise<void>;
  };
  readonly now?: () => number;
  /**
   * A privacy mode (firmware/uplink/privacy.ts `planOf`): clips and thumbnails leave
   * as stream records on the plan's schedule (stream.ts) instead of at once. Live
   * records are not affected. Undefined: mode off.
   */
  readonly privacy?: {
    readonly plan: PrivacyPlan;
    readonly peers: StreamPeers;
    readonly clock?: Clock;
    readonly onSlot?: (s: { lane: Lane; at: number; records: number; cover: number }) => void;
  };
}

export interface UplinkStatus {
  readonly state: 'stopped' | 'idle' | 'sending' | 'backoff';
  readonly queuedSegments: number;
  readonly queuedBytes: number;
  readonly sentSegments: number;
  readonly lastError: string | undefined;
  readonly backoffMs: number;
  readonly liveQueued: number;
  readonly liveSent: number;
  readonly liveDropped: number;
  readonly itemsRejected: number;
  /** Items dropped unsent because the backlog passed its bounds. */
  readonly itemsDropped: number;
  /** The privacy mode's sender, when one is on. */
  readonly privacy?: StreamStatus;
}

export interface Uplink extends CiphertextSink {
  /** Name the relay account when it was not known at creation (before `start`). */
  connect(relayUrl: string, credentials: UplinkCredentials): void;
  /** Start sending (throws ENOACCOUNT while the relay account is unknown). */
  start(): void;
  stop(): Promise<void>;
  status(): UplinkStatus;
  /** Resolve when the durable queue is empty (or reject on abort). */
  drained(signal?: AbortSignal): Promise<void>;
  /** Apply the backlog bounds now (the hub's retention schedule calls this). */
  enforceBacklog(): Promise<readonly BacklogDrop[]>;
  /**
   * With a privacy mode whose notices are scheduled: queue a notice for the next
   * notice slot (instead of the config channel's immediate one). Undefined otherwise.
   */
  readonly scheduledNotices: { sendNotice(n: Omit<NoticeMessage, 't'>): Promise<void> } | undefined;
}

interface LiveRecord {
  readonly itemId: string;
  readonly index: number;
  readonly final: boolean;
  readonly keep: boolean;
  readonly data: Uint8Array;
}

export class UplinkError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UplinkError';
  }
}

/** Status of a 409 answer, when the relay sent one. */
function conflictStatus(e: unknown): { received: number; complete: boolean } | undefined {
  if (!(e instanceof RelayHttpError) || e.status !== 409) return undefined;
  const s = (e.body as { status?: { received?: unknown; complete?: unknown } } | undefined)?.status;
  if (typeof s?.received !== 'number') return undefined;
  return { received: s.received, complete: s.complete === true };
}

export async function createUplink(opts: UplinkOptions): Promise<Uplink> {
  const log = opts.logger.child('uplink');
  const queue = await UplinkQueue.open(opts.stateDir, opts.fs);
  const clientFor = (url: string, c: UplinkCredentials): RelayClient =>
    new RelayClient({
      url,
      token: c.token,
      ...(opts.http ? { http: opts.http } : {}),
      timeoutMs: opts.requestTimeoutMs ?? 30_000,
    });
  let relayUrl = opts.relayUrl;
  const connected = (): RelayClient => {
    if (!client) throw new UplinkError('ENOACCOUNT', 'the uplink has no relay account yet');
    return client;
  };
  // a placeholder until connect(): start() refuses to run without an account
  let client: RelayClient | undefined =
    opts.relayUrl !== undefined && opts.credentials !== undefined
      ? clientFor(opts.relayUrl, opts.credentials)
      : undefined;
  const initialMs = opts.backoff?.initialMs ?? 250;
  const maxMs = opts.backoff?.maxMs ?? 30_000;
  const liveCap = opts.liveQueueBytes ?? 2 * 1024 * 1024;

  let state: UplinkStatus['state'] = 'stopped';
  let ac: AbortController | undefined;
  let loops: Promise<void>[] = [];
  let wake: (() => void) | undefined;
  let liveWake: (() => void) | undefined;
  let sentSegments = 0;
  let lastError: string | undefined;
  let backoffMs = 0;
  let itemsRejected = 0;
  const live: LiveRecord[] = [];
  /** Items whose writer has not sent the final segment yet. */
  const writingItems = new Set<string>();
  let liveBytes = 0;
  let liveSent = 0;
  let liveDropped = 0;
  const liveIndex = new Map<string, number>();
  const drainWaiters = new Set<() => void>();
  /** Items the relay refused for good: later appends of them are discarded. */
  const rejected = new Set<string>();
  const now = opts.now ?? Date.now;
  /** The item whose segment the sender is sending (never dropped under it). */
  let inFlight: string | undefined;
  let itemsDropped = 0;
  const stream =
    opts.privacy === undefined
      ? undefined
      : new StreamSender({
          plan: opts.privacy.plan,
          queue,
          peers: opts.privacy.peers,
          logger: log,
          ...(opts.privacy.clock ? { clock: opts.privacy.clock } : {}),
          ...(opts.privacy.onSlot ? { onSlot: opts.privacy.onSlot } : {}),
          onCommitted: () => {
            sentSegments += 1;
            notifyDrained();
          },
          post: async (itemId, group, bytes, to, signal) => {
            await connected().append(
              itemId,
              { group, kind: 'message', offset: 0, final: true, ...(to ? { to: [to] } : {}) },
              bytes,
              signal,
            );
          },
        });

  async function enforceBacklog(
    incomingBytes: number,
    writing: string | undefined,
  ): Promise<readonly BacklogDrop[]> {
    const b = opts.backlog;
    if (b === undefined) return [];
    const busy = new Set<string>();
    if (inFlight !== undefined) busy.add(inFlight);
    if (writing !== undefined) busy.add(writing);
    const drops = planBacklogDrops(queue.items(), b, { now: now(), incomingBytes, busy });
    if (drops.length === 0) return drops;
    for (const d of drops) {
      await queue.dropItem(d.itemId);
      itemsDropped += 1;
    }
    log.warn('upload backlog over its bounds: dropped the oldest unsent items', {
      count: drops.length,
      bytes: drops.reduce((n, d) => n + d.bytes, 0),
      ids: drops.map((d) => d.itemId),
      queuedBytes: queue.bytes,
    });
    try {
      await b.onDropped?.(drops);
    } catch (e) {
      log.error('could not record dropped items for the phones', { err: e });
    }
    notifyDrained();
    return drops;
  }

  const notifyDrained = (): void => {
    if (queue.length > 0) return;
    for (const fn of drainWaiters) fn();
    drainWaiters.clear();
  };

  const waitForWork = (signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        wake = undefined;
        resolve();
      };
      wake = done;
      signal.addEventListener('abort', done);
    });

  async function sendOne(signal: AbortSignal): Promise<void> {
    inFlight = queue.oldest()?.itemId;
    const next = await queue.peek();
    if (!next) return;
    const { seg, data } = next;
    if (rejected.has(seg.itemId)) {
      await queue.remove(seg.seq);
      return;
    }
    const group = GROUP_FOR_ITEM[seg.kind];
    let offset = seg.offset;
    let body: Uint8Array = data;
    for (;;) {
      try {
        await connected().append(
          seg.itemId,
          { group, kind: seg.kind, offset, final: seg.final },
          body,
          signal,
        );
        break;
      } catch (e) {
        const st = conflictStatus(e);
        if (st === undefined) throw e;
        const end = seg.offset + seg.size;
        if (st.received >= end || st.complete) break; // the relay already has these bytes
        if (st.received > seg.offset) {
          // The relay has a prefix of this segment (an earlier attempt reached it): send the rest.
          body = data.subarray(st.received - seg.offset);
          offset = st.received;
          continue;
        }
        throw new UplinkError(
          'ELOST',
          `relay holds ${st.received} bytes of item ${seg.itemId}, expected ${seg.offset}: earlier bytes were lost on the relay`,
          { cause: e },
        );
      }
    }
    await queue.remove(seg.seq);
    sentSegments += 1;
  }

  async function clipLoop(signal: AbortSignal): Promise<void> {
    let delay = initialMs;
    while (!signal.aborted) {
      if (queue.length === 0) {
        state = 'idle';
        notifyDrained();
        await waitForWork(signal);
        continue;
      }
      state = 'sending';
      try {
        await sendOne(signal).finally(() => {
          inFlight = undefined;
        });
        delay = initialMs;
        backoffMs = 0;
        lastError = undefined;
      } catch (e) {
        if (isAborted(signal)) break;
        const permanent =
          (e instanceof RelayHttpError &&
            e.status >= 400 &&
            e.status < 500 &&
            e.status !== 401 &&
            e.status !== 408 &&
            e.status !== 429) ||
          (e instanceof UplinkError && e.code === 'ELOST');
        const oldest = queue.oldest();
        if (permanent && oldest) {
          const n = await queue.dropItem(oldest.itemId);
          rejected.add(oldest.itemId);
          itemsRejected += 1;
          log.error('relay refused an item; dropping it', {
            itemId: oldest.itemId,
            segments: n,
            err: e,
          });
          continue;
        }
        lastError = reasonOf(e);
        state = 'backoff';
        backoffMs = Math.round(delay * (0.75 + Math.random() * 0.5));
        log.warn('upload failed; retrying', { err: e, backoffMs, queued: queue.length });
        await pause(backoffMs, signal);
        delay = Math.min(maxMs, delay * 2);
      }
    }
  }

  async function liveLoop(signal: AbortSignal): Promise<void> {
    let delay = initialMs;
    while (!signal.aborted) {
      const rec = live[0];
      if (!rec) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            signal.removeEventListener('abort', done);
            liveWake = undefined;
            resolve();
          };
          liveWake = done;
          signal.addEventListener('abort', done);
        });
        continue;
      }
      try {
        await connected().appendLive(rec.itemId, rec.index, rec.final, rec.data, signal);
        if (live[0] === rec) {
          live.shift();
          liveBytes -= rec.data.length;
        }
        liveSent += 1;
        delay = initialMs;
      } catch (e) {
        if (isAborted(signal)) break;
        if (
          e instanceof RelayHttpError &&
          e.status >= 400 &&
          e.status < 500 &&
          e.status !== 429 &&
          e.status !== 401
        ) {
          if (live[0] === rec) {
            live.shift();
            liveBytes -= rec.data.length;
          }
          liveDropped += 1;
          log.warn('relay refused a live record; dropped', {
            itemId: rec.itemId,
            index: rec.index,
            status: e.status,
          });
          continue;
        }
        await pause(Math.min(delay, 1000), signal);
        delay = Math.min(1000, delay * 2);
      }
    }
  }

  function pushLive(itemId: string, bytes: Uint8Array, final: boolean): void {
    const index = liveIndex.get(itemId) ?? 0;
    if (final) liveIndex.delete(itemId);
    else liveIndex.set(itemId, index + 1);
    // The header (0), the first chunk (1: the stream's init segment) and the end record are never dropped.
    const rec: LiveRecord = { itemId, index, final, keep: index <= 1 || final, data: bytes };
    live.push(rec);
    liveBytes += bytes.length;
    // Back-pressure: drop the oldest droppable frames (never the record in flight,
    // a header or an end record) until the queue fits.
    for (let i = 1; liveBytes > liveCap && i < live.length;) {
      const r = live[i];
      if (r === undefined || r.keep || r === rec) {
        i++;
        continue;
      }
      live.splice(i, 1);
      liveBytes -= r.data.length;
      liveDropped += 1;
    }
    liveWake?.();
  }

  /** Apply the backlog bounds before a queued write of `bytes` (see UplinkOptions.backlog). */
  async function beforeQueued(itemId: string, bytes: number, final: boolean): Promise<void> {
    if (opts.backlog === undefined) return;
    // before a new item (age and size) and whenever this write would pass the cap
    const starting = !writingItems.has(itemId);
    if (starting || queue.bytes + bytes > opts.backlog.maxBytes)
      await enforceBacklog(bytes, itemId);
    if (final) writingItems.delete(itemId);
    else writingItems.add(itemId);
  }

  const uplink: Uplink = {
    async append(itemId: string, kind: ItemKind, bytes: Uint8Array, final: boolean): Promise<void> {
      if (kind === 'live') {
        pushLive(itemId, Uint8Array.from(bytes), final);
        return;
      }
      await beforeQueued(itemId, bytes.length, final);
      await queue.push(itemId, kind, bytes, final, now());
      wake?.();
    },
    /** A GOP's records as parts: one durable segment file per MAX_SEGMENT_BYTES, no joining. */
    async appendParts(
      itemId: string,
      kind: ItemKind,
      records: readonly (readonly Uint8Array[])[],
      final: boolean,
    ): Promise<void> {
      if (kind === 'live') {
        // one live record per record (the live queue holds it past this call)
        const last = records.length - 1;
        records.forEach((r, i) => {
          pushLive(itemId, Buffer.concat(r), final && i === last);
        });
        return;
      }
      let bytes = 0;
      for (const r of records) for (const p of r) bytes += p.length;
      await beforeQueued(itemId, bytes, final);
      await queue.pushParts(itemId, kind, records, final, now());
      wake?.();
    },
    scheduledNotices:
      stream !== undefined && opts.privacy?.plan.scheduledNotices === true
        ? {
            sendNotice(n: Omit<NoticeMessage, 't'>): Promise<void> {
              stream.queueNotice(n);
              return Promise.resolve();
            },
          }
        : undefined,
    connect(url: string, credentials: UplinkCredentials): void {
      relayUrl = url;
      client = clientFor(url, credentials);
    },
    start(): void {
      if (ac) return;
      if (!client)
        throw new UplinkError('ENOACCOUNT', 'the uplink has no relay account yet (connect first)');
      ac = new AbortController();
      state = stream ? 'sending' : 'idle';
      loops = [stream ? stream.run(ac.signal) : clipLoop(ac.signal), liveLoop(ac.signal)];
      log.info('uplink started', { relay: relayUrl, queued: queue.length });
    },
    async stop(): Promise<void> {
      if (!ac) return;
      ac.abort();
      ac = undefined;
      await Promise.allSettled(loops);
      loops = [];
      state = 'stopped';
    },
    status(): UplinkStatus {
      return {
        state,
        queuedSegments: queue.length,
        queuedBytes: queue.bytes,
        sentSegments,
        lastError,
        backoffMs,
        liveQueued: live.length,
        liveSent,
        liveDropped,
        itemsRejected,
        itemsDropped,
        ...(stream ? { privacy: stream.status() } : {}),
      };
    },
    enforceBacklog(): Promise<readonly BacklogDrop[]> {
      return enforceBacklog(0, undefined);
    },
    drained(signal?: AbortSignal): Promise<void> {
      if (queue.length === 0) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const fn = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          drainWaiters.delete(fn);
          reject(new UplinkError('EABORTED', 'stopped waiting for the upload queue to drain'));
        };
        drainWaiters.add(fn);
        signal?.addEventListener('abort', onAbort);
      });
    },
  };
  return uplink;
}
