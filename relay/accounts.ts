/**
 * Relay accounts: devices (hubs) and their phones, each a record holding the
 * SHA-256 of its 256-bit secret. A device record also carries the device's
 * durable item counter (`nextSeq`), which the mailbox advances.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from '../base/logger.js';
import { RelayError } from './errors.js';
import { newSecret, sameHash, sha256 } from './secrets.js';
import type { RecordStore } from './store.js';

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
export type PhoneRec = z.infer<typeof PhoneRec>;

export type Principal =
  | { kind: 'device'; id: string; deviceId: string }
  | { kind: 'phone'; id: string; deviceId: string };

const NO_ACCOUNT_HASH = sha256('no-such-account');

export class Accounts {
  readonly #records: RecordStore;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #enrollHash: string | undefined;
  readonly #devices = new Map<string, DeviceRec>();
  readonly #phones = new Map<string, PhoneRec>();

  constructor(
    records: RecordStore,
    log: Logger,
    now: () => number,
    enrollToken: string | undefined,
  ) {
    this.#records = records;
    this.#log = log;
    this.#now = now;
    this.#enrollHash = enrollToken === undefined ? undefined : sha256(enrollToken);
  }

  async load(): Promise<void> {
    for (const { doc } of await this.#records.loadAll('devices')) {
      const d = DeviceRec.parse(doc);
      this.#devices.set(d.deviceId, d);
    }
    for (const { doc } of await this.#records.loadAll('phones')) {
      const p = PhoneRec.parse(doc);
      this.#phones.set(p.phoneId, p);
    }
  }

  /**
   * Another relay process changed an account record (`doc` undefined: deleted).
   * Returns the device it concerns, so the core can wake that device's waiters.
   */
  apply(ns: string, id: string, doc: unknown): string | undefined {
    if (ns === 'devices') {
      if (doc === undefined) this.#devices.delete(id);
      else this.#devices.set(id, DeviceRec.parse(doc));
      return id;
    }
    const was = this.#phones.get(id);
    if (doc === undefined) {
      this.#phones.delete(id);
      return was?.deviceId;
    }
    const p = PhoneRec.parse(doc);
    this.#phones.set(id, p);
    return p.deviceId;
  }

  get deviceCount(): number {
    return this.#devices.size;
  }

  get phoneCount(): number {
    return this.#phones.size;
  }

  deviceIds(): IterableIterator<string> {
    return this.#devices.keys();
  }

  /** Verify a bearer token. Returns undefined on any mismatch (the caller counts failures). */
  authenticate(kind: 'device' | 'phone', id: string, secret: string): Principal | undefined {
    const rec = kind === 'device' ? this.#devices.get(id) : this.#phones.get(id);
    const ok = sameHash(rec?.secretHash ?? NO_ACCOUNT_HASH, sha256(secret)) && rec !== undefined;
    if (!ok) return undefined;
    return { kind, id, deviceId: kind === 'device' ? id : (rec as PhoneRec).deviceId };
  }

  checkEnrollment(token: string | undefined): boolean {
    if (this.#enrollHash === undefined) return true;
    if (token === undefined) return false;
    return sameHash(this.#enrollHash, sha256(token));
  }

  /** Create a device account (the caller serialises account changes). */
  async createDevice(deviceId: string): Promise<{ token: string }> {
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
  }

  hasDevice(deviceId: string): boolean {
    return this.#devices.has(deviceId);
  }

  /** Take the device's next item sequence number (durably advanced before it is used). */
  async takeSeq(deviceId: string): Promise<number> {
    const dev = this.#devices.get(deviceId);
    if (!dev) throw new RelayError(404, 'ENOTFOUND', 'no such device');
    const seq = dev.nextSeq;
    const next: DeviceRec = { ...dev, nextSeq: seq + 1 };
    await this.#records.put('devices', deviceId, next);
    this.#devices.set(deviceId, next);
    return seq;
  }

  /** Create a phone account under `deviceId` (the caller checks the phone limit). */
  async createPhone(deviceId: string): Promise<{ phoneId: string; token: string }> {
    const phoneId = randomBytes(12).toString('base64url');
    const secret = newSecret();
    const phone: PhoneRec = {
      phoneId,
      deviceId,
      secretHash: sha256(secret),
      createdAt: this.#now(),
    };
    await this.#records.put('phones', phoneId, phone);
    this.#phones.set(phoneId, phone);
    return { phoneId, token: `p.${phoneId}.${secret}` };
  }

  phonesOf(deviceId: string): PhoneRec[] {
    return [...this.#phones.values()].filter((p) => p.deviceId === deviceId);
  }

  /** Delete a phone account of `deviceId`; 404 when it is not one. */
  async removePhone(deviceId: string, phoneId: string): Promise<void> {
    const p = this.#phones.get(phoneId);
    if (p?.deviceId !== deviceId)
      throw new RelayError(404, 'ENOTFOUND', 'no such phone on this device');
    await this.#records.delete('phones', phoneId);
    this.#phones.delete(phoneId);
  }
}
