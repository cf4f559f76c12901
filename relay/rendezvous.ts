/**
 * The pairing rendezvous book: pairing tokens offered by hubs, kept as SHA-256
 * hashes (a record per offer), single use and expiring. The core turns a
 * successful `take` into a phone account.
 */
import { z } from 'zod';
import { RelayError } from './errors.js';
import type { RecordStore } from './store.js';
import { sha256 } from './secrets.js';

const RendezvousRec = z.object({
  tokenHash: z.string(),
  deviceId: z.string(),
  expiresAt: z.number(),
});
type RendezvousRec = z.infer<typeof RendezvousRec>;

const NS = 'rendezvous';

export class RendezvousBook {
  readonly #records: RecordStore;
  readonly #now: () => number;
  readonly #defaultTtlMs: number;
  readonly #offers = new Map<string, RendezvousRec>();

  constructor(records: RecordStore, now: () => number, defaultTtlMs: number) {
    this.#records = records;
    this.#now = now;
    this.#defaultTtlMs = defaultTtlMs;
  }

  async load(): Promise<void> {
    const now = this.#now();
    for (const { doc } of await this.#records.loadAll(NS)) {
      const r = RendezvousRec.parse(doc);
      if (r.expiresAt <= now) await this.#records.delete(NS, r.tokenHash);
      else this.#offers.set(r.tokenHash, r);
    }
  }

  async offer(
    deviceId: string,
    token: string,
    ttlMs: number | undefined,
  ): Promise<{ expiresAt: number }> {
    const tokenHash = sha256(token);
    const existing = this.#offers.get(tokenHash);
    if (existing && existing.deviceId !== deviceId)
      throw new RelayError(409, 'EEXISTS', 'this pairing token is already in use');
    const rec: RendezvousRec = {
      tokenHash,
      deviceId,
      expiresAt: this.#now() + (ttlMs ?? this.#defaultTtlMs),
    };
    await this.#records.put(NS, tokenHash, rec);
    this.#offers.set(tokenHash, rec);
    return { expiresAt: rec.expiresAt };
  }

  /** The device that offered `token`, when the offer is live (expired offers are removed). */
  async find(token: string): Promise<string | undefined> {
    const tokenHash = sha256(token);
    const rec = this.#offers.get(tokenHash);
    if (!rec) return undefined;
    if (rec.expiresAt <= this.#now()) {
      this.#offers.delete(tokenHash);
      await this.#records.delete(NS, tokenHash);
      return undefined;
    }
    return rec.deviceId;
  }

  /** The offer was used: forget it. */
  async consume(token: string): Promise<void> {
    const tokenHash = sha256(token);
    this.#offers.delete(tokenHash);
    await this.#records.delete(NS, tokenHash);
  }
}
