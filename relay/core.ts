/**
 * The relay's state machine, transport-free: accounts, per-device mailboxes,
 * resumable appends, acknowledgements with per-phone reference counts, the
 * pairing rendezvous and the in-memory live window. relay/server.ts maps HTTP
 * onto it. Everything here handles opaque ciphertext: the relay never parses
 * an item's bytes.
 *
 * Durability contract: a method that returns has written what it changed
 * (blob first, then the record), so an acknowledged append survives a crash. A
 * crash between the blob and the record leaves an orphan chunk that the next
 * retry of the same offset overwrites.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from '../base/logger.js';
import { VigilError } from '../base/errors.js';
import { ItemKindWire } from '../protocol/relay-api.js';
import type { ItemInfo, LiveInfo, UploadStatus } from '../protocol/relay-api.js';
import type { RelayLimits } from './limits.js';
import type { BlobStore, RecordStore } from './store.js';

export class RelayError extends VigilError {
  readonly status: number;
  readonly extra: Readonly<Record<string, unknown>> | undefined;
  constructor(
    status: number,
    code: string,
    message: string,
    extra?: Readonly<Record<string, unknown>>,
  ) {
    super(code, message);
    this.name = 'RelayError';
    this.status = status;
    this.extra = extra;
  }
}

const DeviceRec = z.object({
  deviceId: z.string(),
  secretHash: z.string(),
  createdAt: z.number(),
  nextSeq: z.number().int(),
});
type DeviceRec = z.infer<typeof DeviceRec>;

const PhoneRec = z.object({
  phoneId: z.string(),
  deviceId: z.string(),
  secretHash: z.string(),
  createdAt: z.number(),
});
type PhoneRec = z.infer<typeof PhoneRec>;

const ItemRec = z.object({
  deviceId: z.string(),
  seq: z.number().int(),
  itemId: z.string(),
  group: z.string(),
  kind: ItemKindWire,
  /** 'down': hub -> phones; 'up': phone -> hub. */
  dir: z.enum(['down', 'up']),
  from: z.string(),
  recipients: z.array(z.string()),
  pending: z.array(z.string()),
  received: z.number().int(),
  complete: z.boolean(),
  createdAt: z.number(),
  chunks: z.array(z.tuple([z.number().int(), z.number().int()])),
  /** Set once every recipient acknowledged: blobs gone, id remembered. */
  deletedAt: z.number().optional(),
});
type ItemRec = z.infer<typeof ItemRec>;

const RendezvousRec = z.object({
  tokenHash: z.string(),
  deviceId: z.string(),
  expiresAt: z.number(),
});
type RendezvousRec = z.infer<typeof RendezvousRec>;

export type Principal =
  | { kind: 'device'; id: string; deviceId: string }
  | { kind: 'phone'; id: string; deviceId: string };

interface LiveSession {
  itemId: string;
  records: Map<number, Buffer>;
  bytes: number;
  next: number;
  complete: boolean;
  finalIndex: number | undefined;
}

function sha256(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Serializes async work per key. */
class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();
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
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}

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
  readonly #blobs: BlobStore;
  readonly #records: RecordStore;
  readonly limits: RelayLimits;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #enrollHash: string | undefined;
  readonly #devices = new Map<string, DeviceRec>();
  readonly #phones = new Map<string, PhoneRec>();
  /** deviceId -> seq -> item */
  readonly #items = new Map<string, Map<number, ItemRec>>();
  /** `${deviceId}/${itemId}` -> seq */
  readonly #byItemId = new Map<string, number>();
  readonly #rendezvous = new Map<string, RendezvousRec>();
  readonly #live = new Map<string, LiveSession>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #mutex = new KeyedMutex();
  #closed = false;

  private constructor(deps: RelayCoreDeps) {
    this.#blobs = deps.blobs;
    this.#records = deps.records;
    this.limits = deps.limits;
    this.#log = deps.logger;
    this.#now = deps.now ?? Date.now;
    this.#enrollHash = deps.enrollToken === undefined ? undefined : sha256(deps.enrollToken);
  }

  static async open(deps: RelayCoreDeps): Promise<RelayCore> {
    const core = new RelayCore(deps);
    await core.#load();
    return core;
  }

  async #load(): Promise<void> {
    for (const { doc } of await this.#records.loadAll('devices')) {
      const d = DeviceRec.parse(doc);
      this.#devices.set(d.deviceId, d);
    }
    for (const { doc } of await this.#records.loadAll('phones')) {
      const p = PhoneRec.parse(doc);
      this.#phones.set(p.phoneId, p);
    }
    const now = this.#now();
    for (const { doc } of await this.#records.loadAll('items')) {
      const it = ItemRec.parse(doc);
      if (it.deletedAt !== undefined && now - it.deletedAt > this.limits.tombstoneMs) {
        await this.#records.delete('items', `${it.deviceId}.${it.seq}`);
        continue;
      }
      this.#index(it);
    }
    for (const { doc } of await this.#records.loadAll('rendezvous')) {
      const r = RendezvousRec.parse(doc);
      if (r.expiresAt <= now) await this.#records.delete('rendezvous', r.tokenHash);
      else this.#rendezvous.set(r.tokenHash, r);
    }
    this.#log.info('relay state loaded', {
      devices: this.#devices.size,
      phones: this.#phones.size,
      items: [...this.#items.values()].reduce((n, m) => n + m.size, 0),
    });
  }

  #index(it: ItemRec): void {
    let m = this.#items.get(it.deviceId);
    if (!m) {
      m = new Map();
      this.#items.set(it.deviceId, m);
    }
    m.set(it.seq, it);
    this.#byItemId.set(`${it.deviceId}/${it.dir}/${it.itemId}`, it.seq);
  }

  // ---- waiting ------------------------------------------------------------------

  #notify(deviceId: string): void {
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

  /** Poll `check` until it yields a value or `waitMs` passes. */
  async #longPoll<T>(
    deviceId: string,
    waitMs: number,
    signal: AbortSignal | undefined,
    check: () => T | undefined,
  ): Promise<T | undefined> {
    const deadline = this.#now() + Math.min(waitMs, this.limits.maxWaitMs);
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
    for (const id of [...this.#waiters.keys()]) this.#notify(id);
  }

  // ---- accounts -----------------------------------------------------------------

  /** Verify a bearer token. Returns undefined on any mismatch (the caller counts failures). */
  authenticate(kind: 'device' | 'phone', id: string, secret: string): Principal | undefined {
    const rec = kind === 'device' ? this.#devices.get(id) : this.#phones.get(id);
    const want = Buffer.from(rec?.secretHash ?? sha256('no-such-account'), 'hex');
    const got = Buffer.from(sha256(secret), 'hex');
    const ok = timingSafeEqual(want, got) && rec !== undefined;
    if (!ok) return undefined;
    return { kind, id, deviceId: kind === 'device' ? id : (rec as PhoneRec).deviceId };
  }

  checkEnrollment(token: string | undefined): boolean {
    if (this.#enrollHash === undefined) return true;
    if (token === undefined) return false;
    return timingSafeEqual(Buffer.from(this.#enrollHash, 'hex'), Buffer.from(sha256(token), 'hex'));
  }

  async createDevice(deviceId: string): Promise<{ token: string }> {
    return this.#mutex.run(`acct`, async () => {
      if (this.#devices.has(deviceId))
        throw new RelayError(409, 'EEXISTS', 'a device with this id is already registered');
      const secret = newSecret();
      const rec: DeviceRec = {
        deviceId,
        secretHash: sha256(secret),
        createdAt: this.#now(),
        nextSeq: 1,
      };
      await this.#records.put('devices', deviceId, rec);
      this.#devices.set(deviceId, rec);
      this.#log.info('device registered', { deviceId });
      return { token: `d.${deviceId}.${secret}` };
    });
  }

  async offerRendezvous(
    deviceId: string,
    token: string,
    ttlMs: number | undefined,
  ): Promise<{ expiresAt: number }> {
    const tokenHash = sha256(token);
    const existing = this.#rendezvous.get(tokenHash);
    if (existing && existing.deviceId !== deviceId)
      throw new RelayError(409, 'EEXISTS', 'this pairing token is already in use');
    const rec: RendezvousRec = {
      tokenHash,
      deviceId,
      expiresAt: this.#now() + (ttlMs ?? this.limits.rendezvousTtlMs),
    };
    await this.#records.put('rendezvous', tokenHash, rec);
    this.#rendezvous.set(tokenHash, rec);
    return { expiresAt: rec.expiresAt };
  }

  /** A phone claims the rendezvous: a phone account is created under the offering device. Single use. */
  async claimRendezvous(
    token: string,
  ): Promise<{ phoneId: string; deviceId: string; token: string } | undefined> {
    return this.#mutex.run('acct', async () => {
      const tokenHash = sha256(token);
      const rec = this.#rendezvous.get(tokenHash);
      if (!rec) return undefined;
      if (rec.expiresAt <= this.#now()) {
        this.#rendezvous.delete(tokenHash);
        await this.#records.delete('rendezvous', tokenHash);
        return undefined;
      }
      if (this.phonesOf(rec.deviceId).length >= this.limits.maxPhones)
        throw new RelayError(409, 'EFULL', 'this device has the most phones allowed');
      const phoneId = randomBytes(12).toString('base64url');
      const secret = newSecret();
      const phone: PhoneRec = {
        phoneId,
        deviceId: rec.deviceId,
        secretHash: sha256(secret),
        createdAt: this.#now(),
      };
      await this.#records.put('phones', phoneId, phone);
      this.#phones.set(phoneId, phone);
      this.#rendezvous.delete(tokenHash);
      await this.#records.delete('rendezvous', tokenHash);
      this.#log.info('phone paired through rendezvous', { deviceId: rec.deviceId, phoneId });
      this.#notify(rec.deviceId);
      return { phoneId, deviceId: rec.deviceId, token: `p.${phoneId}.${secret}` };
    });
  }

  phonesOf(deviceId: string): PhoneRec[] {
    return [...this.#phones.values()].filter((p) => p.deviceId === deviceId);
  }

  /** Remove a phone: its account goes, and it stops holding any item. */
  async removePhone(deviceId: string, phoneId: string): Promise<void> {
    await this.#mutex.run(`dev/${deviceId}`, async () => {
      const p = this.#phones.get(phoneId);
      if (p?.deviceId !== deviceId)
        throw new RelayError(404, 'ENOTFOUND', 'no such phone on this device');
      await this.#records.delete('phones', phoneId);
      this.#phones.delete(phoneId);
      for (const it of [...(this.#items.get(deviceId)?.values() ?? [])]) {
        if (it.dir !== 'down' || !it.pending.includes(phoneId)) continue;
        await this.#release(it, phoneId);
      }
      this.#log.info('phone removed', { deviceId, phoneId });
    });
  }

  // ---- items --------------------------------------------------------------------

  #blobKey(it: ItemRec, offset: number): string {
    return `${it.deviceId}/${it.seq}/${String(offset).padStart(12, '0')}`;
  }

  #status(it: ItemRec): UploadStatus {
    return { itemId: it.itemId, seq: it.seq, received: it.received, complete: it.complete };
  }

  #deviceUsage(deviceId: string): { bytes: number; items: number } {
    let bytes = 0;
    let items = 0;
    for (const it of this.#items.get(deviceId)?.values() ?? []) {
      if (it.deletedAt !== undefined) continue;
      bytes += it.received;
      items += 1;
    }
    return { bytes, items };
  }

  async #create(
    deviceId: string,
    init: Omit<ItemRec, 'seq' | 'deviceId' | 'received' | 'complete' | 'createdAt' | 'chunks'>,
  ): Promise<ItemRec> {
    const dev = this.#devices.get(deviceId);
    if (!dev) throw new RelayError(404, 'ENOTFOUND', 'no such device');
    const usage = this.#deviceUsage(deviceId);
    if (usage.items >= this.limits.maxDeviceItems)
      throw new RelayError(507, 'EQUOTA', 'too many items stored for this device');
    const seq = dev.nextSeq;
    const nextDev: DeviceRec = { ...dev, nextSeq: seq + 1 };
    await this.#records.put('devices', deviceId, nextDev);
    this.#devices.set(deviceId, nextDev);
    const it: ItemRec = {
      ...init,
      deviceId,
      seq,
      received: 0,
      complete: false,
      createdAt: this.#now(),
      chunks: [],
    };
    return it;
  }

  uploadStatus(deviceId: string, itemId: string): UploadStatus | undefined {
    const seq = this.#byItemId.get(`${deviceId}/down/${itemId}`);
    const it = seq === undefined ? undefined : this.#items.get(deviceId)?.get(seq);
    return it ? this.#status(it) : undefined;
  }

  /**
   * Append `body` at `offset` of the hub's item `itemId`. Idempotent: a retry of
   * bytes the relay already has answers with the current status and changes
   * nothing; a gap or a partial overlap answers 409 with the status so the hub
   * resends from `received`.
   */
  async append(
    deviceId: string,
    itemId: string,
    q: {
      group: string;
      kind: ItemKindWire;
      offset: number;
      final: boolean;
      to?: readonly string[] | undefined;
    },
    body: Buffer,
  ): Promise<UploadStatus> {
    return this.#mutex.run(`dev/${deviceId}`, async () => {
      const seq = this.#byItemId.get(`${deviceId}/down/${itemId}`);
      let it = seq === undefined ? undefined : this.#items.get(deviceId)?.get(seq);
      const end = q.offset + body.length;
      let write = true;
      if (it) {
        if (it.group !== q.group || it.kind !== q.kind)
          throw new RelayError(409, 'EMISMATCH', 'item exists with another group or kind', {
            status: this.#status(it),
          });
        if (end <= it.received) {
          // Bytes the relay already has: a retry. Only a late "final" flag changes anything.
          if (!(q.final && !it.complete && end === it.received)) return this.#status(it);
          write = false;
        } else {
          if (it.complete)
            throw new RelayError(409, 'ECOMPLETE', 'item is already complete', {
              status: this.#status(it),
            });
          if (q.offset !== it.received)
            throw new RelayError(409, 'EOFFSET', `expected offset ${it.received}`, {
              status: this.#status(it),
            });
        }
      } else {
        if (q.offset !== 0)
          throw new RelayError(409, 'EOFFSET', 'expected offset 0 for a new item', {
            status: { itemId, seq: 0, received: 0, complete: false },
          });
        if (q.kind === 'live')
          throw new RelayError(400, 'EKIND', 'live records go to /v1/live, not to items');
        const phones = this.phonesOf(deviceId).map((p) => p.phoneId);
        const to = q.to ?? phones;
        for (const p of to)
          if (!phones.includes(p))
            throw new RelayError(400, 'EPHONE', `phone ${p} is not paired with this device`);
        if (end > this.limits.maxItemBytes)
          throw new RelayError(
            413,
            'ETOOLARGE',
            `item would exceed ${this.limits.maxItemBytes} bytes`,
          );
        if (this.#deviceUsage(deviceId).bytes + body.length > this.limits.maxDeviceBytes)
          throw new RelayError(507, 'EQUOTA', 'device storage quota exceeded');
        it = await this.#create(deviceId, {
          itemId,
          group: q.group,
          kind: q.kind,
          dir: 'down',
          from: deviceId,
          recipients: [...to],
          pending: [...to],
        });
      }
      if (end > this.limits.maxItemBytes)
        throw new RelayError(
          413,
          'ETOOLARGE',
          `item would exceed ${this.limits.maxItemBytes} bytes`,
        );
      if (write && this.#deviceUsage(deviceId).bytes + body.length > this.limits.maxDeviceBytes)
        throw new RelayError(507, 'EQUOTA', 'device storage quota exceeded');
      if (write && body.length > 0) await this.#blobs.put(this.#blobKey(it, q.offset), body);
      const next: ItemRec = write
        ? {
            ...it,
            received: end,
            complete: q.final,
            chunks: body.length > 0 ? [...it.chunks, [q.offset, body.length]] : it.chunks,
          }
        : { ...it, complete: true };
      await this.#records.put('items', `${deviceId}.${next.seq}`, next);
      this.#index(next);
      if (next.complete && next.pending.length === 0) await this.#drop(next);
      this.#notify(deviceId);
      return this.#status(next);
    });
  }

  /** A phone posts a message to its hub (heartbeats, key packages...). */
  async postUp(phone: Principal, group: string, body: Buffer): Promise<{ seq: number }> {
    return this.#mutex.run(`dev/${phone.deviceId}`, async () => {
      const itemId = randomBytes(9).toString('base64url');
      const it = await this.#create(phone.deviceId, {
        itemId,
        group,
        kind: 'message',
        dir: 'up',
        from: phone.id,
        recipients: ['device'],
        pending: ['device'],
      });
      if (this.#deviceUsage(phone.deviceId).bytes + body.length > this.limits.maxDeviceBytes)
        throw new RelayError(507, 'EQUOTA', 'device storage quota exceeded');
      if (body.length > 0) await this.#blobs.put(this.#blobKey(it, 0), body);
      const next: ItemRec = {
        ...it,
        received: body.length,
        complete: true,
        chunks: body.length > 0 ? [[0, body.length]] : [],
      };
      await this.#records.put('items', `${phone.deviceId}.${next.seq}`, next);
      this.#index(next);
      this.#notify(phone.deviceId);
      return { seq: next.seq };
    });
  }

  #visible(p: Principal, it: ItemRec): boolean {
    if (it.deletedAt !== undefined || it.deviceId !== p.deviceId) return false;
    if (p.kind === 'device') return it.dir === 'up' && it.pending.includes('device');
    return it.dir === 'down' && it.pending.includes(p.id);
  }

  #info(it: ItemRec): ItemInfo {
    return {
      seq: it.seq,
      itemId: it.itemId,
      group: it.group,
      kind: it.kind,
      from: it.from,
      size: it.received,
      complete: it.complete,
      createdAt: it.createdAt,
    };
  }

  /** Items waiting for this principal with seq > after (long-poll when none). */
  async list(
    p: Principal,
    after: number,
    group: string | undefined,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ items: ItemInfo[]; cursor: number }> {
    const r = await this.#longPoll(p.deviceId, waitMs, signal, () => {
      const items = [...(this.#items.get(p.deviceId)?.values() ?? [])]
        .filter(
          (it) =>
            it.seq > after && this.#visible(p, it) && (group === undefined || it.group === group),
        )
        .sort((a, b) => a.seq - b.seq)
        .map((it) => this.#info(it));
      return items.length > 0 ? items : undefined;
    });
    const items = r ?? [];
    return { items, cursor: items.at(-1)?.seq ?? after };
  }

  #find(p: Principal, seq: number): ItemRec {
    const it = this.#items.get(p.deviceId)?.get(seq);
    // Same answer for "absent" and "not yours": nothing to learn by probing.
    if (!it || !this.#visible(p, it))
      throw new RelayError(404, 'ENOTFOUND', 'no such item in your mailbox');
    return it;
  }

  /**
   * Bytes of an item from `offset` (at most maxReadBytes). When the item is still
   * being uploaded and nothing is past `offset`, wait for more.
   */
  async read(
    p: Principal,
    seq: number,
    offset: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ info: ItemInfo; data: Buffer }> {
    this.#find(p, seq);
    await this.#longPoll(p.deviceId, waitMs, signal, () => {
      const it = this.#items.get(p.deviceId)?.get(seq);
      if (!it || !this.#visible(p, it)) return true;
      return it.received > offset || it.complete ? true : undefined;
    });
    const it = this.#find(p, seq);
    if (offset > it.received)
      throw new RelayError(416, 'ERANGE', `offset beyond the ${it.received} bytes received`);
    const parts: Buffer[] = [];
    let total = 0;
    for (const [off, len] of it.chunks) {
      if (off + len <= offset) continue;
      if (total >= this.limits.maxReadBytes) break;
      const blob = await this.#blobs.get(this.#blobKey(it, off));
      if (blob?.length !== len)
        throw new RelayError(500, 'ECORRUPT', `chunk ${off} of item ${seq} is missing or damaged`);
      const part = off < offset ? blob.subarray(offset - off) : blob;
      parts.push(part);
      total += part.length;
    }
    return { info: this.#info(it), data: Buffer.concat(parts) };
  }

  /** Acknowledge: this principal no longer needs the item. Deleted once nobody does. */
  async ack(p: Principal, seq: number): Promise<void> {
    await this.#mutex.run(`dev/${p.deviceId}`, async () => {
      const it = this.#find(p, seq);
      await this.#release(it, p.kind === 'device' ? 'device' : p.id);
      this.#notify(p.deviceId);
    });
  }

  async #release(it: ItemRec, holder: string): Promise<void> {
    const next: ItemRec = { ...it, pending: it.pending.filter((x) => x !== holder) };
    if (next.pending.length === 0 && next.complete) {
      await this.#drop(next);
      return;
    }
    await this.#records.put('items', `${it.deviceId}.${it.seq}`, next);
    this.#index(next);
  }

  /** Delete an item's blobs and keep a tombstone so a late retry cannot recreate it. */
  async #drop(it: ItemRec): Promise<void> {
    const tomb: ItemRec = { ...it, pending: [], chunks: [], deletedAt: this.#now() };
    await this.#records.put('items', `${it.deviceId}.${it.seq}`, tomb);
    this.#index(tomb);
    for (const [off] of it.chunks) await this.#blobs.delete(this.#blobKey(it, off));
  }

  // ---- live ---------------------------------------------------------------------

  appendLive(
    deviceId: string,
    itemId: string,
    index: number,
    final: boolean,
    body: Buffer,
  ): LiveInfo {
    let s = this.#live.get(deviceId);
    if (s?.itemId !== itemId) {
      s = { itemId, records: new Map(), bytes: 0, next: 0, complete: false, finalIndex: undefined };
      this.#live.set(deviceId, s);
    }
    if (!s.records.has(index)) {
      s.records.set(index, body);
      s.bytes += body.length;
    }
    s.next = Math.max(s.next, index + 1);
    if (final) {
      s.complete = true;
      s.finalIndex = index;
    }
    // Evict oldest records past the window, but keep the header (index 0) and the
    // first chunk (index 1: by convention it carries the stream's initialisation
    // segment), so a viewer joining late can still start decoding.
    if (s.bytes > this.limits.liveWindowBytes) {
      const order = [...s.records.keys()].filter((i) => i > 1).sort((a, b) => a - b);
      for (const i of order) {
        if (s.bytes <= this.limits.liveWindowBytes) break;
        s.bytes -= s.records.get(i)?.length ?? 0;
        s.records.delete(i);
      }
    }
    this.#notify(deviceId);
    return this.#liveInfo(s);
  }

  #liveInfo(s: LiveSession | undefined): LiveInfo {
    if (!s) return { itemId: null, first: 0, next: 0, complete: false };
    const keys = [...s.records.keys()];
    return {
      itemId: s.itemId,
      first: keys.length ? Math.min(...keys) : s.next,
      next: s.next,
      complete: s.complete,
    };
  }

  liveInfo(deviceId: string): LiveInfo {
    return this.#liveInfo(this.#live.get(deviceId));
  }

  /**
   * The next live record for a phone: record 0 (the header) of the current live
   * item when `itemId` is not the current one or `after` is absent, else the
   * first record with index > after (gaps are dropped frames). Long-polls.
   */
  async readLive(
    p: Principal,
    itemId: string | undefined,
    after: number | undefined,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ itemId: string; index: number; final: boolean; data: Buffer } | undefined> {
    return this.#longPoll(p.deviceId, waitMs, signal, () => {
      const s = this.#live.get(p.deviceId);
      if (!s) return undefined;
      const keys = [...s.records.keys()].sort((a, b) => a - b);
      let idx: number | undefined;
      if (itemId !== s.itemId || after === undefined) idx = keys[0];
      else idx = keys.find((k) => k > after);
      if (idx === undefined) return undefined;
      const data = s.records.get(idx);
      if (!data) return undefined;
      return { itemId: s.itemId, index: idx, final: s.finalIndex === idx, data };
    });
  }

  // ---- age limit (relay/expiry.ts) -----------------------------------------------

  /**
   * Delete, in every account, the items stored longer than `maxAgeMs` (acknowledged by
   * everyone or not: the relay's age limit, docs/storage.md "Retention"). Tombstones stay,
   * so a late retry cannot bring one back. Returns what was deleted per device.
   */
  async expire(maxAgeMs: number): Promise<{ deviceId: string; items: number; bytes: number }[]> {
    const cutoff = this.#now() - maxAgeMs;
    const out: { deviceId: string; items: number; bytes: number }[] = [];
    for (const deviceId of [...this.#items.keys()]) {
      const r = await this.#mutex.run(`dev/${deviceId}`, async () => {
        let items = 0;
        let bytes = 0;
        for (const it of [...(this.#items.get(deviceId)?.values() ?? [])]) {
          if (it.deletedAt !== undefined || it.createdAt >= cutoff) continue;
          await this.#drop(it);
          items += 1;
          bytes += it.received;
        }
        if (items > 0) this.#notify(deviceId);
        return { deviceId, items, bytes };
      });
      if (r.items > 0) out.push(r);
    }
    return out;
  }

  // ---- introspection for tests and benchmarks ------------------------------------

  stats(): { devices: number; phones: number; items: number; storedBytes: number } {
    let items = 0;
    let storedBytes = 0;
    for (const id of this.#devices.keys()) {
      const u = this.#deviceUsage(id);
      items += u.items;
      storedBytes += u.bytes;
    }
    return { devices: this.#devices.size, phones: this.#phones.size, items, storedBytes };
  }
}
