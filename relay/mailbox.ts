/**
 * Per-device mailboxes: resumable appends of hub items, phone -> hub messages,
 * listing, reading (streaming while an item is still uploading) and
 * acknowledgement with per-phone reference counts. Items are opaque
 * ciphertext: the relay never parses their bytes.
 *
 * Durability contract: a method that returns has written what it changed
 * (blob first, then the record), so an acknowledged append survives a crash. A
 * crash between the blob and the record leaves an orphan chunk that the next
 * retry of the same offset overwrites.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ItemKindWire } from '../protocol/relay-api.js';
import type { ItemInfo, UploadStatus } from '../protocol/relay-api.js';
import type { Accounts, Principal } from './accounts.js';
import { RelayError } from './errors.js';
import type { RelayLimits } from './limits.js';
import type { BlobStore, RecordStore } from './store.js';
import type { ChangeFeed, KeyedMutex } from './waiting.js';

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

export interface AppendParams {
  group: string;
  kind: ItemKindWire;
  offset: number;
  final: boolean;
  to?: readonly string[] | undefined;
}

export interface MailboxDeps {
  readonly blobs: BlobStore;
  readonly records: RecordStore;
  readonly limits: RelayLimits;
  readonly now: () => number;
  readonly accounts: Accounts;
  readonly feed: ChangeFeed;
  /** Shared with the core: `dev/<deviceId>` serialises every change of one device. */
  readonly mutex: KeyedMutex;
}

export function deviceLock(deviceId: string): string {
  return `dev/${deviceId}`;
}

export class Mailboxes {
  readonly #blobs: BlobStore;
  readonly #records: RecordStore;
  readonly #limits: RelayLimits;
  readonly #now: () => number;
  readonly #accounts: Accounts;
  readonly #feed: ChangeFeed;
  readonly #mutex: KeyedMutex;
  /** deviceId -> seq -> item */
  readonly #items = new Map<string, Map<number, ItemRec>>();
  /** `${deviceId}/${dir}/${itemId}` -> seq */
  readonly #byItemId = new Map<string, number>();

  constructor(deps: MailboxDeps) {
    this.#blobs = deps.blobs;
    this.#records = deps.records;
    this.#limits = deps.limits;
    this.#now = deps.now;
    this.#accounts = deps.accounts;
    this.#feed = deps.feed;
    this.#mutex = deps.mutex;
  }

  async load(): Promise<void> {
    const now = this.#now();
    for (const { doc } of await this.#records.loadAll('items')) {
      const it = ItemRec.parse(doc);
      if (it.deletedAt !== undefined && now - it.deletedAt > this.#limits.tombstoneMs) {
        await this.#records.delete('items', `${it.deviceId}.${it.seq}`);
        continue;
      }
      this.#index(it);
    }
  }

  /** Delete every account's items stored longer than `maxAgeMs` (RelayCore.expire). */
  async expire(maxAgeMs: number): Promise<{ deviceId: string; items: number; bytes: number }[]> {
    const cutoff = this.#now() - maxAgeMs;
    const out: { deviceId: string; items: number; bytes: number }[] = [];
    for (const deviceId of [...this.#items.keys()]) {
      const r = await this.#mutex.run(deviceLock(deviceId), async () => {
        let items = 0;
        let bytes = 0;
        for (const it of [...(this.#items.get(deviceId)?.values() ?? [])]) {
          if (it.deletedAt !== undefined || it.createdAt >= cutoff) continue;
          await this.#drop(it);
          items += 1;
          bytes += it.received;
        }
        if (items > 0) this.#feed.notify(deviceId);
        return { deviceId, items, bytes };
      });
      if (r.items > 0) out.push(r);
    }
    return out;
  }

  /**
   * Another relay process wrote (`doc`) or deleted (undefined) item record `id`
   * (`<deviceId>.<seq>`). Returns the device it concerns.
   */
  apply(id: string, doc: unknown): string {
    if (doc !== undefined) {
      const it = ItemRec.parse(doc);
      this.#index(it);
      return it.deviceId;
    }
    const dot = id.lastIndexOf('.');
    const deviceId = id.slice(0, dot);
    const seq = Number(id.slice(dot + 1));
    const m = this.#items.get(deviceId);
    const it = m?.get(seq);
    if (it) {
      m?.delete(seq);
      const key = `${deviceId}/${it.dir}/${it.itemId}`;
      if (this.#byItemId.get(key) === seq) this.#byItemId.delete(key);
    }
    return deviceId;
  }

  get itemCount(): number {
    return [...this.#items.values()].reduce((n, m) => n + m.size, 0);
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

  #blobKey(it: ItemRec, offset: number): string {
    return `${it.deviceId}/${it.seq}/${String(offset).padStart(12, '0')}`;
  }

  #status(it: ItemRec): UploadStatus {
    return { itemId: it.itemId, seq: it.seq, received: it.received, complete: it.complete };
  }

  usage(deviceId: string): { bytes: number; items: number } {
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
    if (!this.#accounts.hasDevice(deviceId))
      throw new RelayError(404, 'ENOTFOUND', 'no such device');
    const usage = this.usage(deviceId);
    if (usage.items >= this.#limits.maxDeviceItems)
      throw new RelayError(507, 'EQUOTA', 'too many items stored for this device');
    const seq = await this.#accounts.takeSeq(deviceId);
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
    q: AppendParams,
    body: Buffer,
  ): Promise<UploadStatus> {
    return this.#mutex.run(deviceLock(deviceId), async () => {
      const limits = this.#limits;
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
        const phones = this.#accounts.phonesOf(deviceId).map((p) => p.phoneId);
        const to = q.to ?? phones;
        for (const p of to)
          if (!phones.includes(p))
            throw new RelayError(400, 'EPHONE', `phone ${p} is not paired with this device`);
        if (end > limits.maxItemBytes)
          throw new RelayError(413, 'ETOOLARGE', `item would exceed ${limits.maxItemBytes} bytes`);
        if (this.usage(deviceId).bytes + body.length > limits.maxDeviceBytes)
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
      if (end > limits.maxItemBytes)
        throw new RelayError(413, 'ETOOLARGE', `item would exceed ${limits.maxItemBytes} bytes`);
      if (write && this.usage(deviceId).bytes + body.length > limits.maxDeviceBytes)
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
      this.#feed.notify(deviceId);
      return this.#status(next);
    });
  }

  /** A phone posts a message to its hub (heartbeats, key packages...). */
  async postUp(phone: Principal, group: string, body: Buffer): Promise<{ seq: number }> {
    return this.#mutex.run(deviceLock(phone.deviceId), async () => {
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
      if (this.usage(phone.deviceId).bytes + body.length > this.#limits.maxDeviceBytes)
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
      this.#feed.notify(phone.deviceId);
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
    const r = await this.#feed.longPoll(p.deviceId, waitMs, signal, () => {
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
    await this.#feed.longPoll(p.deviceId, waitMs, signal, () => {
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
      if (total >= this.#limits.maxReadBytes) break;
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
    await this.#mutex.run(deviceLock(p.deviceId), async () => {
      const it = this.#find(p, seq);
      await this.#release(it, p.kind === 'device' ? 'device' : p.id);
      this.#feed.notify(p.deviceId);
    });
  }

  /** A removed phone stops holding any item. The caller holds the device lock. */
  async releasePhone(deviceId: string, phoneId: string): Promise<void> {
    for (const it of [...(this.#items.get(deviceId)?.values() ?? [])]) {
      if (it.dir !== 'down' || !it.pending.includes(phoneId)) continue;
      await this.#release(it, phoneId);
    }
  }

  async #release(it: ItemRec, holder: string): Promise<void> {
    const next: ItemRec = { ...it, pending: it.pending.filter((x) => x !== holder) };
    if (next.pending.length === 0 && next.complete) {
      await this.#drop(next);
      return;
    }
    // on a full disk this write may use the space reserve: acks must work to free space
    await this.#records.put('items', `${it.deviceId}.${it.seq}`, next, { freesSpace: true });
    this.#index(next);
  }

  /** Delete an item's blobs and keep a tombstone so a late retry cannot recreate it. */
  async #drop(it: ItemRec): Promise<void> {
    const tomb: ItemRec = { ...it, pending: [], chunks: [], deletedAt: this.#now() };
    await this.#records.put('items', `${it.deviceId}.${it.seq}`, tomb, { freesSpace: true });
    this.#index(tomb);
    for (const [off] of it.chunks) await this.#blobs.delete(this.#blobKey(it, off));
  }
}
