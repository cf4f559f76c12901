/**
 * The pairing rendezvous book: pairing tokens offered by hubs, kept as SHA-256
 * hashes (a record per offer), single use and expiring. The core turns a
 * found offer into a phone account.
 *
 * Two rules keep the book from being an oracle or a sink:
 *  - An offer of a token another device already offered is answered exactly
 *    like a fresh one (same answer, same record write) but only shadows it: the
 *    shadow can never be claimed, and `offer` reports it so the server counts
 *    the attempt as a failure. The first device's offer stands.
 *  - A device holds at most `maxPerDevice` offers (shadows included); a new
 *    offer replaces its offer that expires first.
 */
import { z } from 'zod';
import type { RecordStore } from './store.js';
import { sha256 } from './secrets.js';

const RendezvousRec = z.object({
  tokenHash: z.string(),
  deviceId: z.string(),
  expiresAt: z.number(),
  /** An offer of a token already offered by another device: never claimable. */
  shadow: z.literal(true).optional(),
});
type RendezvousRec = z.infer<typeof RendezvousRec>;

const NS = 'rendezvous';

function recordId(r: { tokenHash: string; deviceId: string; shadow?: true | undefined }): string {
  return r.shadow ? `s${sha256(`${r.deviceId}:${r.tokenHash}`)}` : r.tokenHash;
}

export interface RendezvousBookOptions {
  readonly defaultTtlMs: number;
  readonly maxPerDevice: number;
}

export class RendezvousBook {
  readonly #records: RecordStore;
  readonly #now: () => number;
  readonly #opts: RendezvousBookOptions;
  /** record id -> offer (a real offer's id is its token hash). */
  readonly #offers = new Map<string, RendezvousRec>();
  readonly #byDevice = new Map<string, Set<string>>();

  constructor(records: RecordStore, now: () => number, opts: RendezvousBookOptions) {
    this.#records = records;
    this.#now = now;
    this.#opts = opts;
  }

  async load(): Promise<void> {
    const now = this.#now();
    for (const { id, doc } of await this.#records.loadAll(NS)) {
      const r = RendezvousRec.parse(doc);
      if (r.expiresAt <= now) await this.#records.delete(NS, id);
      else this.#set(r);
    }
  }

  #set(r: RendezvousRec): void {
    const id = recordId(r);
    this.#offers.set(id, r);
    let ids = this.#byDevice.get(r.deviceId);
    if (!ids) {
      ids = new Set();
      this.#byDevice.set(r.deviceId, ids);
    }
    ids.add(id);
  }

  /** Another relay process wrote (`doc`) or deleted (undefined) an offer. */
  apply(id: string, doc: unknown): void {
    if (doc === undefined) this.#forget(id);
    else this.#set(RendezvousRec.parse(doc));
  }

  async #remove(id: string): Promise<void> {
    if (!this.#offers.has(id)) return;
    await this.#records.delete(NS, id);
    this.#forget(id);
  }

  #forget(id: string): void {
    const r = this.#offers.get(id);
    if (!r) return;
    this.#offers.delete(id);
    const ids = this.#byDevice.get(r.deviceId);
    ids?.delete(id);
    if (ids?.size === 0) this.#byDevice.delete(r.deviceId);
  }

  /** Offers held (shadows and not yet swept expired ones included). */
  get size(): number {
    return this.#offers.size;
  }

  /** Offers held by a device (expired ones included until they are swept). */
  offersOf(deviceId: string): number {
    return this.#byDevice.get(deviceId)?.size ?? 0;
  }

  /**
   * Offer (or renew) `token` for `deviceId`. `inUse` is for the server's
   * failure count only; the answer to the client must not depend on it.
   */
  async offer(
    deviceId: string,
    token: string,
    ttlMs: number | undefined,
  ): Promise<{ expiresAt: number; inUse: boolean }> {
    const now = this.#now();
    const tokenHash = sha256(token);
    const holder = this.#offers.get(tokenHash);
    if (holder && holder.expiresAt <= now) await this.#remove(tokenHash);
    const inUse = holder !== undefined && holder.expiresAt > now && holder.deviceId !== deviceId;
    const rec: RendezvousRec = {
      tokenHash,
      deviceId,
      expiresAt: now + (ttlMs ?? this.#opts.defaultTtlMs),
      ...(inUse ? { shadow: true as const } : {}),
    };
    const id = recordId(rec);
    // Make room: expired offers first, then the ones that expire first.
    const mine = [...(this.#byDevice.get(deviceId) ?? [])]
      .filter((x) => x !== id)
      .map((x) => ({ x, at: this.#offers.get(x)?.expiresAt ?? 0 }))
      .sort((a, b) => a.at - b.at);
    for (const { x, at } of mine) {
      if (
        at > now &&
        this.offersOf(deviceId) - (this.#offers.has(id) ? 1 : 0) < this.#opts.maxPerDevice
      )
        break;
      await this.#remove(x);
    }
    await this.#records.put(NS, id, rec);
    this.#set(rec);
    return { expiresAt: rec.expiresAt, inUse };
  }

  /** The device that offered `token`, when the offer is live (an expired one is removed). */
  async find(token: string): Promise<string | undefined> {
    const tokenHash = sha256(token);
    const rec = this.#offers.get(tokenHash);
    if (!rec) return undefined;
    if (rec.expiresAt <= this.#now()) {
      await this.#remove(tokenHash);
      return undefined;
    }
    return rec.deviceId;
  }

  /** The offer was used: forget it. */
  async consume(token: string): Promise<void> {
    await this.#remove(sha256(token));
  }
}
