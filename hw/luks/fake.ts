/**
 * In-memory LUKS for controller tests on machines without device-mapper.
 * Mirrors CryptsetupLuks' observable behaviour and error codes: keyslots,
 * subsystem labels, mappings, header backup/restore (as a small JSON file),
 * and header corruption. It refuses to luksFormat a `vigil-ready` volume so a
 * test catches any attempt to format live data.
 */
/* eslint-disable @typescript-eslint/require-await -- a fake keeps the async signatures of the port it stands in for */
import { readFile, writeFile } from 'node:fs/promises';
import { LuksError } from './luks.js';
import type {
  AddKeyOptions,
  FormatOptions,
  Luks,
  LuksDump,
  MappingStatus,
  OpenOptions,
  Pbkdf,
} from './luks.js';

export interface FakeVolume {
  uuid: string;
  label: string | undefined;
  subsystem: string | undefined;
  cipher: string;
  keySizeBits: number;
  sectorSize: number;
  slots: Map<number, { key: Buffer; pbkdf: Pbkdf }>;
  /** The header was destroyed (the data segment is still there). */
  corrupt: boolean;
  /** Filesystem on the opened volume (set by FakeBlockDevices.mkfsExt4). */
  fsType: string | undefined;
}

const HEADER_MAGIC = 'fake-luks-header-v1';

export class FakeLuks implements Luks {
  readonly volumes = new Map<string, FakeVolume>();
  readonly mappings = new Map<string, { device: string }>();
  /** Devices that exist (others give ELUKS_NO_DEVICE). */
  readonly devices = new Set<string>();
  readonly formats: string[] = [];
  /** Throw at the Nth call of `op` (crash/failure injection). */
  failNext: { op: string; error: Error } | undefined;

  #check(op: string): void {
    if (this.failNext?.op === op) {
      const e = this.failNext.error;
      this.failNext = undefined;
      throw e;
    }
  }

  #vol(device: string): FakeVolume {
    if (!this.devices.has(device))
      throw new LuksError('ELUKS_NO_DEVICE', device, `device ${device} not found`);
    const v = this.volumes.get(device);
    if (v === undefined || v.corrupt)
      throw new LuksError('ELUKS_NOT_LUKS', device, `${device} has no valid LUKS header`);
    return v;
  }

  #slotOf(v: FakeVolume, key: Uint8Array): number | undefined {
    for (const [id, s] of v.slots) if (s.key.equals(Buffer.from(key))) return id;
    return undefined;
  }

  /** Power cycle: mappings vanish. */
  reboot(): void {
    this.mappings.clear();
  }

  corruptHeader(device: string): void {
    const v = this.volumes.get(device);
    if (v) v.corrupt = true;
  }

  isLuks(device: string): Promise<boolean> {
    this.#check('isLuks');
    const v = this.volumes.get(device);
    if (v !== undefined) return Promise.resolve(!v.corrupt);
    return readFile(device, 'utf8')
      .then((t) => t.startsWith(HEADER_MAGIC))
      .catch(() => false);
  }

  async format(device: string, key: Uint8Array, opts: FormatOptions): Promise<void> {
    this.#check('format');
    if (!this.devices.has(device))
      throw new LuksError('ELUKS_NO_DEVICE', device, `device ${device} not found`);
    const old = this.volumes.get(device);
    if (old !== undefined && !old.corrupt && old.subsystem === 'vigil-ready')
      throw new Error(`TEST INVARIANT: luksFormat of a vigil-ready volume on ${device}`);
    for (const m of this.mappings.values())
      if (m.device === device) throw new LuksError('ELUKS_BUSY', device, `${device} is in use`);
    this.formats.push(device);
    this.volumes.set(device, {
      uuid: opts.uuid ?? crypto.randomUUID(),
      label: opts.label,
      subsystem: opts.subsystem,
      cipher: opts.cipher,
      keySizeBits: opts.keySizeBits,
      sectorSize: opts.sectorSize ?? 512,
      slots: new Map([[0, { key: Buffer.from(key), pbkdf: opts.pbkdf }]]),
      corrupt: false,
      fsType: undefined,
    });
    this.#check('format:after');
  }

  async open(device: string, name: string, key: Uint8Array, _opts?: OpenOptions): Promise<void> {
    this.#check('open');
    const v = this.#vol(device);
    if (this.mappings.has(name))
      throw new LuksError('ELUKS_BUSY', device, `Device ${name} already exists`);
    if (v.slots.size === 0)
      throw new LuksError('ELUKS_NO_KEYSLOT', device, `${device} has no usable keyslot`);
    if (this.#slotOf(v, key) === undefined)
      throw new LuksError('ELUKS_WRONG_KEY', device, `no keyslot of ${device} accepts this key`);
    this.mappings.set(name, { device });
  }

  async close(name: string): Promise<void> {
    this.#check('close');
    if (!this.mappings.delete(name))
      throw new LuksError('ELUKS_FAILED', name, `${name} is not active`);
  }

  async status(name: string): Promise<MappingStatus | undefined> {
    const m = this.mappings.get(name);
    if (m === undefined) return undefined;
    const v = this.volumes.get(m.device);
    return {
      path: `/dev/mapper/${name}`,
      name,
      inUse: false,
      type: 'LUKS2',
      cipher: v?.cipher,
      keySizeBits: v?.keySizeBits,
      device: m.device,
    };
  }

  async testKey(device: string, key: Uint8Array): Promise<boolean> {
    this.#check('testKey');
    return this.#slotOf(this.#vol(device), key) !== undefined;
  }

  async addKey(
    device: string,
    existingKey: Uint8Array,
    newKey: Uint8Array,
    opts: AddKeyOptions,
  ): Promise<number> {
    this.#check('addKey');
    const v = this.#vol(device);
    if (this.#slotOf(v, existingKey) === undefined)
      throw new LuksError('ELUKS_WRONG_KEY', device, 'no keyslot accepts this key');
    let slot = opts.slot ?? 0;
    if (opts.slot === undefined) while (v.slots.has(slot)) slot += 1;
    if (v.slots.has(slot))
      throw new LuksError('ELUKS_FAILED', device, `keyslot ${String(slot)} is in use`);
    v.slots.set(slot, { key: Buffer.from(newKey), pbkdf: opts.pbkdf });
    return slot;
  }

  async removeKey(device: string, key: Uint8Array): Promise<void> {
    const v = this.#vol(device);
    const s = this.#slotOf(v, key);
    if (s === undefined)
      throw new LuksError('ELUKS_WRONG_KEY', device, 'no keyslot accepts this key');
    v.slots.delete(s);
  }

  async killSlot(device: string, slot: number, authKey: Uint8Array): Promise<void> {
    const v = this.#vol(device);
    if (this.#slotOf(v, authKey) === undefined)
      throw new LuksError('ELUKS_WRONG_KEY', device, 'no keyslot accepts this key');
    v.slots.delete(slot);
  }

  async headerBackup(device: string, file: string): Promise<void> {
    const v = this.#vol(device);
    const slots = [...v.slots].map(([id, s]) => [id, s.key.toString('hex'), s.pbkdf] as const);
    await writeFile(file, HEADER_MAGIC + JSON.stringify({ ...v, slots, corrupt: false }), {
      flag: 'wx',
    });
  }

  async headerRestore(device: string, file: string): Promise<void> {
    this.#check('headerRestore');
    if (!this.devices.has(device))
      throw new LuksError('ELUKS_NO_DEVICE', device, `device ${device} not found`);
    const text = await readFile(file, 'utf8');
    if (!text.startsWith(HEADER_MAGIC))
      throw new LuksError('ELUKS_NOT_LUKS', file, `${file} is not a header backup`);
    const raw = JSON.parse(text.slice(HEADER_MAGIC.length)) as Omit<FakeVolume, 'slots'> & {
      slots: [number, string, Pbkdf][];
    };
    const cur = this.volumes.get(device);
    this.volumes.set(device, {
      ...raw,
      fsType: cur?.fsType ?? raw.fsType,
      corrupt: false,
      slots: new Map(raw.slots.map(([id, k, p]) => [id, { key: Buffer.from(k, 'hex'), pbkdf: p }])),
    });
  }

  async dump(device: string): Promise<LuksDump> {
    this.#check('dump');
    let v: FakeVolume;
    if (!this.volumes.has(device) && (await this.isLuks(device))) {
      const raw = JSON.parse(
        (await readFile(device, 'utf8')).slice(HEADER_MAGIC.length),
      ) as FakeVolume;
      v = { ...raw, slots: new Map() };
    } else v = this.#vol(device);
    return {
      version: 2,
      uuid: v.uuid,
      label: v.label,
      subsystem: v.subsystem,
      epoch: 1,
      keyslots: [...v.slots].map(([id, s]) => ({
        id,
        type: 'luks2',
        keySizeBytes: v.keySizeBits / 8,
        pbkdf:
          s.pbkdf.type === 'pbkdf2'
            ? { type: 'pbkdf2', iterations: s.pbkdf.iterations }
            : {
                type: 'argon2id',
                memoryKiB: s.pbkdf.memoryKiB,
                parallel: s.pbkdf.parallel,
                timeCost: s.pbkdf.iterations ?? 4,
              },
        areaEncryption: v.cipher,
      })),
      segments: [
        {
          id: 0,
          type: 'crypt',
          offsetBytes: 16 * 1024 * 1024,
          encryption: v.cipher,
          sectorSize: v.sectorSize,
        },
      ],
      keyslotsSizeBytes: 2 * 1024 * 1024,
    };
  }

  async setSubsystem(device: string, subsystem: string): Promise<void> {
    this.#check('setSubsystem');
    this.#vol(device).subsystem = subsystem;
  }
}
