/**
 * The relay's state machine, transport-free. relay/server.ts maps HTTP onto
 * it. The core composes the parts along their seams and owns what crosses them:
 *
 *  - accounts.ts: device and phone accounts (credentials, enrollment);
 *  - rendezvous.ts: pairing tokens offered by hubs, claimed once by a phone;
 *  - mailbox.ts: per-device mailboxes (appends, reads, acks, up messages);
 *  - live.ts: the in-memory live window;
 *  - waiting.ts: the per-device lock and the change feed that wakes long-polls;
 *  - cluster.ts: with several relay processes on one store, the locks span the
 *    processes and the others' changes arrive here (`#applyRemote`), update the
 *    in-memory state and wake the long-polls waiting on it.
 *
 * Everything here handles opaque ciphertext: the relay never parses an item's bytes.
 */
import type { Logger } from '../base/logger.js';
import type { ItemInfo, LiveInfo, UploadStatus } from '../protocol/relay-api.js';
import { Accounts } from './accounts.js';
import { SingleProcess } from './cluster.js';
import type { Cluster, FailureMessage } from './cluster.js';
import type { PhoneRec, Principal } from './accounts.js';
import { RelayError } from './errors.js';
import type { RelayLimits } from './limits.js';
import { LiveWindow } from './live.js';
import type { LiveRecord } from './live.js';
import { Mailboxes, deviceLock } from './mailbox.js';
import type { AppendParams } from './mailbox.js';
import { RendezvousBook } from './rendezvous.js';
import type { BlobStore, RecordStore } from './store.js';
import { ChangeFeed, KeyedMutex } from './waiting.js';

export { RelayError } from './errors.js';
export type { Principal } from './accounts.js';

export interface RelayCoreDeps {
  readonly blobs: BlobStore;
  readonly records: RecordStore;
  readonly limits: RelayLimits;
  readonly logger: Logger;
  readonly now?: () => number;
  /** When set, creating a device account needs this enrollment token. */
  readonly enrollToken?: string | undefined;
  /** Other relay processes sharing `records` (default: none). */
  readonly cluster?: Cluster;
  /** A failed authentication seen by another relay process (for the lockout counters). */
  readonly onPeerFailure?: (m: FailureMessage) => void;
  /** The cluster's change feed broke: this process must stop serving. */
  readonly onLost?: (err: Error) => void;
  /**
   * A record of a namespace the core does not own (push state) changed in
   * another process; returns whether it was handled.
   */
  readonly onRecord?: (ns: string, id: string, doc: unknown) => boolean;
}

export class RelayCore {
  readonly limits: RelayLimits;
  readonly #log: Logger;
  readonly #accounts: Accounts;
  readonly #rendezvous: RendezvousBook;
  readonly #mail: Mailboxes;
  readonly #live: LiveWindow;
  readonly #feed: ChangeFeed;
  readonly #mutex: KeyedMutex;
  readonly #cluster: Cluster;
  readonly #deps: RelayCoreDeps;

  private constructor(deps: RelayCoreDeps) {
    const now = deps.now ?? Date.now;
    this.limits = deps.limits;
    this.#log = deps.logger;
    this.#deps = deps;
    this.#cluster = deps.cluster ?? new SingleProcess();
    const cluster = this.#cluster;
    this.#mutex = new KeyedMutex((key, fn) => cluster.exclusive(key, fn));
    this.#feed = new ChangeFeed(now, deps.limits.maxWaitMs);
    this.#accounts = new Accounts(deps.records, deps.logger, now, deps.enrollToken);
    this.#rendezvous = new RendezvousBook(deps.records, now, {
      defaultTtlMs: deps.limits.rendezvousTtlMs,
      maxPerDevice: deps.limits.maxOffersPerDevice,
    });
    this.#mail = new Mailboxes({
      blobs: deps.blobs,
      records: deps.records,
      limits: deps.limits,
      now,
      accounts: this.#accounts,
      feed: this.#feed,
      mutex: this.#mutex,
    });
    this.#live = new LiveWindow(
      {
        windowBytes: deps.limits.liveWindowBytes,
        totalBytes: deps.limits.liveTotalBytes,
        idleMs: deps.limits.liveIdleMs,
      },
      now,
    );
  }

  static async open(deps: RelayCoreDeps): Promise<RelayCore> {
    const core = new RelayCore(deps);
    await core.#accounts.load();
    await core.#mail.load();
    await core.#rendezvous.load();
    await core.#cluster.start({
      record: (ns, id, doc) => {
        core.#applyRemote(ns, id, doc);
      },
      live: (m) => {
        try {
          core.#live.append(m.deviceId, m.itemId, m.index, m.final, m.data);
        } catch (e) {
          // no memory left for it here (ELIVEFULL): viewers of this process miss the record
          core.#log.debug('live record from another relay dropped', { err: e });
        }
        core.#feed.notify(m.deviceId);
      },
      failure: (m) => deps.onPeerFailure?.(m),
      lost: (err) => {
        core.#feed.close();
        deps.onLost?.(err);
      },
    });
    core.#log.info('relay state loaded', {
      devices: core.#accounts.deviceCount,
      phones: core.#accounts.phoneCount,
      items: core.#mail.itemCount,
    });
    return core;
  }

  close(): void {
    this.#feed.close();
  }

  /** Another process changed a record: update the in-memory state, wake the device's waiters. */
  #applyRemote(ns: string, id: string, doc: unknown): void {
    let deviceId: string | undefined;
    switch (ns) {
      case 'devices':
      case 'phones':
        deviceId = this.#accounts.apply(ns, id, doc);
        break;
      case 'items':
        deviceId = this.#mail.apply(id, doc);
        break;
      case 'rendezvous':
        this.#rendezvous.apply(id, doc);
        break;
      default:
        if (this.#deps.onRecord?.(ns, id, doc) !== true)
          this.#log.warn('record of an unknown kind from another relay ignored', { ns });
    }
    if (deviceId !== undefined) this.#feed.notify(deviceId);
  }

  /** Catch up with every change the other relay processes committed before now. */
  async sync(): Promise<void> {
    await this.#cluster.sync();
  }

  /** Tell the other relay processes about a failed authentication (lockout counters). */
  async publishFailure(m: FailureMessage): Promise<void> {
    await this.#cluster.publishFailure(m);
  }

  /** Failures other processes recorded within the last `windowMs` (counted at start). */
  async recentFailures(sinceMs: number): Promise<FailureMessage[]> {
    return this.#cluster.recentFailures(sinceMs);
  }

  // ---- accounts and pairing -------------------------------------------------------

  /**
   * Verify a bearer token. Returns undefined on any mismatch (the caller counts
   * failures). An unknown account is looked up again after catching up with
   * the other relay processes (it may have been created through one of them).
   */
  async authenticate(
    kind: 'device' | 'phone',
    id: string,
    secret: string,
  ): Promise<Principal | undefined> {
    const p = this.#accounts.authenticate(kind, id, secret);
    if (p || this.#deps.cluster === undefined) return p;
    await this.#cluster.sync();
    return this.#accounts.authenticate(kind, id, secret);
  }

  checkEnrollment(token: string | undefined): boolean {
    return this.#accounts.checkEnrollment(token);
  }

  async createDevice(deviceId: string): Promise<{ token: string }> {
    return this.#mutex.run('acct', () => {
      if (this.#accounts.deviceCount >= this.limits.maxDevices)
        throw new RelayError(507, 'EQUOTA', 'the relay holds the most device accounts allowed');
      return this.#accounts.createDevice(deviceId);
    });
  }

  /**
   * Offer a pairing token. `inUse` (another device offered it) is for the
   * caller's failure count only: the answer to the client must not show it.
   */
  async offerRendezvous(
    deviceId: string,
    token: string,
    ttlMs: number | undefined,
  ): Promise<{ expiresAt: number; inUse: boolean }> {
    return this.#mutex.run('acct', () => this.#rendezvous.offer(deviceId, token, ttlMs));
  }

  /** A phone claims the rendezvous: a phone account is created under the offering device. Single use. */
  async claimRendezvous(
    token: string,
  ): Promise<{ phoneId: string; deviceId: string; token: string } | undefined> {
    return this.#mutex.run('acct', async () => {
      const deviceId = await this.#rendezvous.find(token);
      if (deviceId === undefined) return undefined;
      if (this.#accounts.phonesOf(deviceId).length >= this.limits.maxPhones)
        throw new RelayError(409, 'EFULL', 'this device has the most phones allowed');
      const phone = await this.#accounts.createPhone(deviceId);
      await this.#rendezvous.consume(token);
      this.#log.info('phone paired through rendezvous', { deviceId, phoneId: phone.phoneId });
      this.#feed.notify(deviceId);
      return { phoneId: phone.phoneId, deviceId, token: phone.token };
    });
  }

  async phonesOf(deviceId: string): Promise<PhoneRec[]> {
    await this.#cluster.sync();
    return this.#accounts.phonesOf(deviceId);
  }

  /** Remove a phone: its account goes, and it stops holding any item. */
  async removePhone(deviceId: string, phoneId: string): Promise<void> {
    await this.#mutex.run(deviceLock(deviceId), async () => {
      await this.#accounts.removePhone(deviceId, phoneId);
      await this.#mail.releasePhone(deviceId, phoneId);
      this.#log.info('phone removed', { deviceId, phoneId });
    });
  }

  // ---- mailboxes ----------------------------------------------------------------

  async uploadStatus(deviceId: string, itemId: string): Promise<UploadStatus | undefined> {
    await this.#cluster.sync();
    return this.#mail.uploadStatus(deviceId, itemId);
  }

  async append(
    deviceId: string,
    itemId: string,
    q: AppendParams,
    body: Buffer,
  ): Promise<UploadStatus> {
    return this.#mail.append(deviceId, itemId, q, body);
  }

  async postUp(phone: Principal, group: string, body: Buffer): Promise<{ seq: number }> {
    return this.#mail.postUp(phone, group, body);
  }

  async list(
    p: Principal,
    after: number,
    group: string | undefined,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ items: ItemInfo[]; cursor: number }> {
    await this.#cluster.sync();
    return this.#mail.list(p, after, group, waitMs, signal);
  }

  async read(
    p: Principal,
    seq: number,
    offset: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ info: ItemInfo; data: Buffer }> {
    await this.#cluster.sync();
    return this.#mail.read(p, seq, offset, waitMs, signal);
  }

  async ack(p: Principal, seq: number): Promise<void> {
    await this.#mail.ack(p, seq);
  }

  // ---- live ---------------------------------------------------------------------

  /** Keep a live record here and hand it to the other relay processes (their viewers). */
  async appendLive(
    deviceId: string,
    itemId: string,
    index: number,
    final: boolean,
    body: Buffer,
  ): Promise<LiveInfo> {
    const info = this.#live.append(deviceId, itemId, index, final, body);
    this.#feed.notify(deviceId);
    await this.#cluster.publishLive({ deviceId, itemId, index, final, data: body });
    return info;
  }

  async liveInfo(deviceId: string): Promise<LiveInfo> {
    await this.#cluster.sync();
    return this.#live.info(deviceId);
  }

  /** The next live record for a phone (see LiveWindow.next). Long-polls. */
  async readLive(
    p: Principal,
    itemId: string | undefined,
    after: number | undefined,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<LiveRecord | undefined> {
    await this.#cluster.sync();
    return this.#feed.longPoll(p.deviceId, waitMs, signal, () =>
      this.#live.next(p.deviceId, itemId, after),
    );
  }

  // ---- age limit (relay/expiry.ts) -----------------------------------------------

  /**
   * Delete, in every account, the items stored longer than `maxAgeMs` (acknowledged by
   * everyone or not: the relay's age limit, docs/storage.md "Retention"). Tombstones stay,
   * so a late retry cannot bring one back. Returns what was deleted per device.
   */
  expire(maxAgeMs: number): Promise<{ deviceId: string; items: number; bytes: number }[]> {
    return this.#mail.expire(maxAgeMs);
  }

  // ---- introspection for tests and benchmarks ------------------------------------

  stats(): {
    devices: number;
    phones: number;
    items: number;
    storedBytes: number;
    liveBytes: number;
    offers: number;
  } {
    let items = 0;
    let storedBytes = 0;
    for (const id of this.#accounts.deviceIds()) {
      const u = this.#mail.usage(id);
      items += u.items;
      storedBytes += u.bytes;
    }
    return {
      devices: this.#accounts.deviceCount,
      phones: this.#accounts.phoneCount,
      items,
      storedBytes,
      liveBytes: this.#live.totalBytes,
      offers: this.#rendezvous.size,
    };
  }
}
