/**
 * The relay's state machine, transport-free. relay/server.ts maps HTTP onto
 * it. The core composes the parts along their seams and owns what crosses them:
 *
 *  - accounts.ts: device and phone accounts (credentials, enrollment);
 *  - rendezvous.ts: pairing tokens offered by hubs, claimed once by a phone;
 *  - mailbox.ts: per-device mailboxes (appends, reads, acks, up messages);
 *  - live.ts: the in-memory live window;
 *  - waiting.ts: the per-device lock and the change feed that wakes long-polls.
 *
 * Everything here handles opaque ciphertext: the relay never parses an item's bytes.
 */
import type { Logger } from '../base/logger.js';
import type { ItemInfo, LiveInfo, UploadStatus } from '../protocol/relay-api.js';
import { Accounts } from './accounts.js';
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
}

export class RelayCore {
  readonly limits: RelayLimits;
  readonly #log: Logger;
  readonly #accounts: Accounts;
  readonly #rendezvous: RendezvousBook;
  readonly #mail: Mailboxes;
  readonly #live: LiveWindow;
  readonly #feed: ChangeFeed;
  readonly #mutex = new KeyedMutex();

  private constructor(deps: RelayCoreDeps) {
    const now = deps.now ?? Date.now;
    this.limits = deps.limits;
    this.#log = deps.logger;
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

  // ---- accounts and pairing -------------------------------------------------------

  /** Verify a bearer token. Returns undefined on any mismatch (the caller counts failures). */
  authenticate(kind: 'device' | 'phone', id: string, secret: string): Principal | undefined {
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

  phonesOf(deviceId: string): PhoneRec[] {
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

  uploadStatus(deviceId: string, itemId: string): UploadStatus | undefined {
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
    return this.#mail.list(p, after, group, waitMs, signal);
  }

  async read(
    p: Principal,
    seq: number,
    offset: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ info: ItemInfo; data: Buffer }> {
    return this.#mail.read(p, seq, offset, waitMs, signal);
  }

  async ack(p: Principal, seq: number): Promise<void> {
    await this.#mail.ack(p, seq);
  }

  // ---- live ---------------------------------------------------------------------

  appendLive(
    deviceId: string,
    itemId: string,
    index: number,
    final: boolean,
    body: Buffer,
  ): LiveInfo {
    const info = this.#live.append(deviceId, itemId, index, final, body);
    this.#feed.notify(deviceId);
    return info;
  }

  liveInfo(deviceId: string): LiveInfo {
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
