/**
 * The data volume: first-boot creation, unlock at every later boot, recovery
 * material, and the hand-over to the supervisor.
 *
 *   const storage = createStorage(deps);
 *   storage.onStatus((s) => ...);              // 'locked' tells the phone / console why
 *   const r = await storage.unlockAndMount(signal);
 *   // {state:'unlocked', mountPoint, source} | {state:'locked', reason, waitingFor}
 *
 * Never formatting live data. Progress lives in two places that survive a
 * power cut: a record on the root filesystem (DurableFs) written *before*
 * luksFormat with the UUID the new volume will carry, and the LUKS2 header's
 * subsystem field (`vigil-new` until setup completes, then `vigil-ready`,
 * updated atomically by cryptsetup). A device is formatted only when
 *  - it holds no LUKS header, no recognised filesystem, and reads as zeros or
 *    starts with the image builder's blank marker, or
 *  - the record says *we* began formatting this device and it still holds no
 *    usable volume of ours (crash inside luksFormat), or it is our own
 *    `vigil-new` volume that no machine key opens (crash before the first
 *    keyslot was complete; no data can have been written to it).
 * Everything else — a `vigil-ready` volume, a foreign LUKS volume, a corrupt
 * header of a volume the record says was completed, any unknown bytes —
 * is never formatted: the hub stays `locked` and says why.
 */
import { DATA_VOLUME_NAME } from '../../protocol/data-volume.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { isAborted, pause } from '../../base/async.js';
import { chmod, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { reasonOf } from '../../base/errors.js';
import { SimulatedCrash } from '../../hw/os/fs.js';
import type { DurableFs } from '../../hw/os/fs.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import type { BlockDevices, BlockDeviceInfo } from '../../hw/luks/block.js';
import { CIPHER_PROFILES, LuksError } from '../../hw/luks/luks.js';
import type { Luks, LuksDump } from '../../hw/luks/luks.js';
import type { Logger } from '../../base/logger.js';
import { PhoneKeySource } from './key-sources.js';
import type { KeySource, KeySourceId } from './key-sources.js';
import { MACHINE_KEY_PBKDF, chooseCipher, memTotalKiB, passphrasePbkdf } from './params.js';
import type { CipherChoice } from './params.js';
import { generateRecoveryKey, recoveryKeyBytes } from './recovery-key.js';

export const SUBSYSTEM_NEW = 'vigil-new';
export const SUBSYSTEM_READY = 'vigil-ready';
export const LUKS_LABEL = DATA_VOLUME_NAME;
export const FS_LABEL = DATA_VOLUME_NAME;
/** LUKS2 keyslots area: 2 MiB holds 8 slots of 512-bit keys and keeps header backups small. */
export const KEYSLOTS_SIZE = 2 * 1024 * 1024;

/** Inside the mounted volume. */
export const VOLUME_MARKER = '.vigil/volume.json';
export const RECOVERY_DIR = '.vigil/recovery';
export const SECRETS_DIR = 'provisioning';

export type WaitingFor = 'phone' | 'recovery';

export type UnlockResult =
  | {
      readonly state: 'unlocked';
      readonly mountPoint: string;
      readonly source: KeySourceId | 'already-open';
      readonly firstBoot: boolean;
    }
  | {
      readonly state: 'locked';
      readonly reason: LockedReason;
      readonly detail: string;
      readonly waitingFor: readonly WaitingFor[];
    };

export type LockedReason =
  | 'no-device'
  | 'no-machine-key'
  | 'wrong-key'
  | 'no-key'
  | 'header-corrupt'
  | 'foreign-data'
  | 'error';

export type StorageStatus =
  | { readonly state: 'finding-device' }
  | { readonly state: 'formatting'; readonly step: string; readonly device: string }
  | { readonly state: 'unlocking'; readonly source: KeySourceId; readonly device: string }
  | {
      readonly state: 'locked';
      readonly reason: LockedReason;
      readonly detail: string;
      readonly waitingFor: readonly WaitingFor[];
    }
  | {
      readonly state: 'unlocked';
      readonly mountPoint: string;
      readonly source: KeySourceId | 'already-open';
    };

export interface StorageConfig {
  /** Explicit device path; otherwise found by partition label / LUKS label / the first-boot record. */
  readonly device?: string;
  readonly partLabel: string;
  readonly mapperName: string;
  readonly cipher: CipherChoice;
  readonly allowDiscards: boolean;
  /** How often a waiting (locked) hub re-checks for an unlock done elsewhere (the CLI). */
  readonly pollMs: number;
  /** Host path of the mount point (mapped through HostPaths); default /var/lib/vigil/data. */
  readonly mountPoint?: string;
}

export const DEFAULT_STORAGE_CONFIG: StorageConfig = {
  partLabel: DATA_VOLUME_NAME,
  mapperName: DATA_VOLUME_NAME,
  cipher: 'auto',
  allowDiscards: false,
  pollMs: 2000,
};

/** Recovery material, handed to the paired phone for safekeeping. */
export interface RecoveryMaterial {
  readonly luksUuid: string;
  readonly recoveryKey: string;
  /** The phone-unlock key: the phone sends it back to unlock a hub whose OTP key fails. */
  readonly phoneKey: Uint8Array;
  /** luksHeaderBackup image (restore with `vigil storage recovery restore-header`). */
  readonly headerBackup: Uint8Array;
}

export interface EscrowPort {
  /**
   * Resolves once the material is safely on its way to the phones (held by the
   * relay until they fetch it): to `phoneIds`, or to every paired phone.
   */
  escrow(
    material: RecoveryMaterial,
    signal: AbortSignal,
    phoneIds?: readonly string[],
  ): Promise<void>;
}

const EscrowedMarker = z.object({
  escrowedAt: z.string(),
  /** Phones (MLS phone ids) that got the material; absent = one broadcast to every phone. */
  phones: z.array(z.string()).optional(),
});

export interface StorageDeps {
  readonly luks: Luks;
  readonly block: BlockDevices;
  readonly fs: DurableFs;
  readonly paths: HostPaths;
  readonly logger: Logger;
  /** Tried in this order; automatic ones at once, interactive ones while locked. */
  readonly keySources: readonly KeySource[];
  readonly config?: Partial<StorageConfig>;
  readonly random?: (n: number) => Uint8Array;
  readonly readCpuInfo?: () => Promise<string>;
  readonly readMemInfo?: () => Promise<string>;
  readonly cpuCount?: number;
  readonly now?: () => Date;
  /** Sleep used while waiting (tests make it instant). */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const RecordSchema = z.object({
  format: z.literal('vigil-storage-record'),
  version: z.literal(1),
  /** Device path and partition UUID as seen when formatting began. */
  device: z.string(),
  partUuid: z.string().optional(),
  luksUuid: z.string(),
  phase: z.enum(['formatting', 'ready']),
  cipher: z.string(),
  startedAt: z.string(),
  readyAt: z.string().optional(),
});
export type StorageRecord = z.infer<typeof RecordSchema>;

const MarkerSchema = z.object({
  format: z.literal('vigil-volume'),
  version: z.literal(1),
  luksUuid: z.string(),
  createdAt: z.string(),
});

class Locked extends Error {
  readonly reason: LockedReason;
  readonly detail: string;
  readonly waitingFor: readonly WaitingFor[];
  constructor(reason: LockedReason, detail: string, waitingFor: readonly WaitingFor[]) {
    super(detail);
    this.reason = reason;
    this.detail = detail;
    this.waitingFor = waitingFor;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Storage {
  readonly config: StorageConfig;
  readonly #d: StorageDeps;
  readonly #log: Logger;
  readonly #listeners = new Set<(s: StorageStatus) => void>();
  readonly #random: (n: number) => Uint8Array;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #now: () => Date;
  #status: StorageStatus = { state: 'finding-device' };

  constructor(deps: StorageDeps) {
    this.#d = deps;
    this.config = { ...DEFAULT_STORAGE_CONFIG, ...deps.config };
    this.#log = deps.logger.child('storage');
    this.#random = deps.random ?? ((n) => new Uint8Array(randomBytes(n)));
    this.#sleep = deps.sleep ?? pause;
    this.#now = deps.now ?? (() => new Date());
  }

  // ---- status ----------------------------------------------------------------

  get status(): StorageStatus {
    return this.#status;
  }

  /** The LUKS adapter (for status and header backup in the CLI). */
  get luks(): Luks {
    return this.#d.luks;
  }

  onStatus(fn: (s: StorageStatus) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #emit(s: StorageStatus): void {
    this.#status = s;
    if (s.state === 'locked')
      this.#log.warn('data volume locked', {
        reason: s.reason,
        detail: s.detail,
        waitingFor: s.waitingFor,
      });
    else this.#log.info(`storage ${s.state}`, { ...s });
    for (const fn of this.#listeners) fn(s);
  }

  // ---- paths -------------------------------------------------------------------

  get mountPoint(): string {
    return this.config.mountPoint !== undefined
      ? this.#d.paths.host(this.config.mountPoint)
      : this.#d.paths.dataMount;
  }
  get mapperPath(): string {
    return `/dev/mapper/${this.config.mapperName}`;
  }
  get recordPath(): string {
    return this.#d.paths.host('/var/lib/vigil/storage/record.json');
  }
  /** Where the provisioning secrets live once moved into the volume. */
  get secretsDir(): string {
    return join(this.mountPoint, SECRETS_DIR);
  }

  async readRecord(): Promise<StorageRecord | undefined> {
    const b = await this.#d.fs.readIfExists(this.recordPath);
    if (b === undefined) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(b.toString('utf8'));
    } catch {
      this.#log.error('storage record is not JSON; ignoring it', { path: this.recordPath });
      return undefined;
    }
    const r = RecordSchema.safeParse(raw);
    if (!r.success) {
      this.#log.error('storage record is invalid; ignoring it', { path: this.recordPath });
      return undefined;
    }
    return r.data;
  }

  async #writeRecord(r: StorageRecord): Promise<void> {
    await this.#d.fs.writeFileAtomic(
      this.recordPath,
      JSON.stringify(r, null, 2) + '\n',
      'storage-record',
    );
  }

  // ---- device discovery -----------------------------------------------------------

  async findDevice(signal?: AbortSignal): Promise<string | undefined> {
    if (this.config.device !== undefined) return this.config.device;
    const rec = await this.readRecord();
    const devs = await this.#d.block.list(signal);
    const pick = (f: (d: BlockDeviceInfo) => boolean): string | undefined => devs.find(f)?.path;
    return (
      (rec?.partUuid !== undefined ? pick((d) => d.partUuid === rec.partUuid) : undefined) ??
      pick((d) => d.partLabel === this.config.partLabel) ??
      pick((d) => d.fsType === 'crypto_LUKS' && d.label === LUKS_LABEL) ??
      (rec !== undefined ? pick((d) => d.path === rec.device) : undefined)
    );
  }

  // ---- the boot path ---------------------------------------------------------------------

  /**
   * Bring the volume up: format it on first boot, otherwise unlock it with the
   * first key source that works, then mount it. With `wait` (default) a hub
   * that cannot unlock automatically reports `locked` and keeps waiting for
   * the phone or a console unlock until `signal` aborts.
   */
  async unlockAndMount(signal: AbortSignal, opts: { wait?: boolean } = {}): Promise<UnlockResult> {
    const wait = opts.wait ?? true;
    try {
      return await this.#bringUp(signal);
    } catch (e) {
      if (!(e instanceof Locked)) {
        if (e instanceof SimulatedCrash) throw e;
        if (signal.aborted) return this.#locked('error', 'aborted', []);
        this.#log.error('storage bring-up failed', { err: e });
        return this.#locked('error', reasonOf(e), []);
      }
      const first = this.#locked(e.reason, e.detail, e.waitingFor);
      if (!wait || e.waitingFor.length === 0) return first;
      return this.#waitForUnlock(signal, e);
    }
  }

  #locked(reason: LockedReason, detail: string, waitingFor: readonly WaitingFor[]): UnlockResult {
    const s = { state: 'locked', reason, detail, waitingFor } as const;
    this.#emit(s);
    return s;
  }

  async #bringUp(signal: AbortSignal): Promise<UnlockResult> {
    this.#emit({ state: 'finding-device' });
    const already = await this.#d.luks
      .status(this.config.mapperName, signal)
      .catch(() => undefined);
    if (already !== undefined) {
      const device = already.device ?? (await this.findDevice(signal)) ?? '';
      return this.#afterOpen(device, 'already-open', signal);
    }
    const device = await this.findDevice(signal);
    if (device === undefined)
      throw new Locked(
        'no-device',
        `no data partition found (partition label "${this.config.partLabel}")`,
        [],
      );
    const rec = await this.readRecord();
    const isLuks = await this.#d.luks.isLuks(device, signal);
    if (!isLuks) return this.#notLuks(device, rec, signal);
    const dump = await this.#d.luks.dump(device, signal);
    if (
      dump.subsystem === SUBSYSTEM_NEW &&
      rec?.luksUuid === dump.uuid &&
      rec.phase === 'formatting'
    ) {
      // Our own first boot was interrupted after luksFormat. Resume with the machine key if it opens.
      const opened = await this.#tryAutomatic(device, signal);
      if (opened !== undefined) return this.#afterOpen(device, opened, signal);
      this.#log.warn(
        'interrupted first boot left a volume no machine key opens; it never held data: formatting again',
        {
          device,
          luksUuid: dump.uuid,
        },
      );
      return this.#format(device, rec, signal);
    }
    return this.#unlockExisting(device, dump, signal);
  }

  async #notLuks(
    device: string,
    rec: StorageRecord | undefined,
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    const ours =
      rec !== undefined &&
      (rec.device === device || (await this.#samePartition(rec, device, signal)));
    if (ours && rec.phase === 'ready') {
      throw new Locked(
        'header-corrupt',
        `the LUKS header of ${device} is missing or corrupt; restore it with "vigil storage recovery restore-header --from <backup>"`,
        ['recovery'],
      );
    }
    if (ours && rec.phase === 'formatting') {
      this.#log.warn('resuming an interrupted first boot: luksFormat did not complete', { device });
      return this.#format(device, rec, signal);
    }
    const probe = await this.#d.block.probe(device, signal);
    if (probe.TYPE !== undefined) {
      throw new Locked(
        'foreign-data',
        `${device} holds a ${probe.TYPE} filesystem, not a Vigil volume; refusing to format it`,
        [],
      );
    }
    const content = await this.#d.block.sample(device);
    if (content === 'data') {
      throw new Locked(
        'foreign-data',
        `${device} is not blank (no LUKS header, but non-zero data): if it is a Vigil volume with a damaged header, restore the header backup; refusing to format`,
        ['recovery'],
      );
    }
    return this.#format(device, undefined, signal);
  }

  async #samePartition(rec: StorageRecord, device: string, signal: AbortSignal): Promise<boolean> {
    if (rec.partUuid === undefined) return false;
    const devs = await this.#d.block.list(signal).catch(() => []);
    return devs.some((d) => d.path === device && d.partUuid === rec.partUuid);
  }

  async #machineKey(
    signal: AbortSignal,
  ): Promise<{ id: KeySourceId; key: Uint8Array } | undefined> {
    for (const src of this.#d.keySources) {
      if (src.interactive) continue;
      const keys = await src.obtain(signal).catch((e: unknown) => {
        this.#log.warn('key source failed', { source: src.id, err: e });
        return [] as Uint8Array[];
      });
      const k = keys[0];
      if (k !== undefined) return { id: src.id, key: k };
    }
    return undefined;
  }

  async #format(
    device: string,
    previous: StorageRecord | undefined,
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    const mk = await this.#machineKey(signal);
    if (mk === undefined)
      throw new Locked(
        'no-machine-key',
        'first boot needs a machine key source (OTP, or the development key file); none is available',
        [],
      );
    const cpuinfo = await (
      this.#d.readCpuInfo ?? (() => readFile('/proc/cpuinfo', 'utf8'))
    )().catch(() => '');
    const profile = chooseCipher(cpuinfo, this.config.cipher);
    const partUuid = (await this.#d.block.list(signal).catch(() => [])).find(
      (d) => d.path === device,
    )?.partUuid;
    const rec: StorageRecord = {
      format: 'vigil-storage-record',
      version: 1,
      device,
      ...(partUuid !== undefined
        ? { partUuid }
        : previous?.partUuid !== undefined
          ? { partUuid: previous.partUuid }
          : {}),
      luksUuid: randomUUID(),
      phase: 'formatting',
      cipher: CIPHER_PROFILES[profile].cipher,
      startedAt: this.#now().toISOString(),
    };
    // The intent is durable before a single byte of the device changes.
    await this.#writeRecord(rec);
    this.#emit({ state: 'formatting', step: 'luksFormat', device });
    this.#log.info('formatting the data volume', {
      device,
      cipher: rec.cipher,
      luksUuid: rec.luksUuid,
    });
    await this.#d.luks.format(
      device,
      mk.key,
      {
        ...CIPHER_PROFILES[profile],
        pbkdf: MACHINE_KEY_PBKDF,
        uuid: rec.luksUuid,
        label: LUKS_LABEL,
        subsystem: SUBSYSTEM_NEW,
        keyslotsSizeBytes: KEYSLOTS_SIZE,
      },
      signal,
    );
    await this.#open(device, mk.key, signal);
    return this.#afterOpen(device, mk.id, signal);
  }

  async #open(device: string, key: Uint8Array, signal: AbortSignal): Promise<void> {
    await this.#d.luks.open(device, this.config.mapperName, key, {
      allowDiscards: this.config.allowDiscards,
      signal,
    });
  }

  /** Try each automatic source; returns the id that opened the volume. Wrong keys are logged, not thrown. */
  async #tryAutomatic(
    device: string,
    signal: AbortSignal,
    failures?: string[],
  ): Promise<KeySourceId | undefined> {
    for (const src of this.#d.keySources) {
      if (src.interactive) continue;
      if (
        await this.#tryKeys(device, src, await src.obtain(signal).catch(() => []), signal, failures)
      )
        return src.id;
    }
    return undefined;
  }

  async #tryKeys(
    device: string,
    src: KeySource,
    keys: readonly Uint8Array[],
    signal: AbortSignal,
    failures?: string[],
  ): Promise<boolean> {
    if (keys.length === 0) {
      failures?.push(`${src.id}: no key available`);
      return false;
    }
    for (const k of keys) {
      this.#emit({ state: 'unlocking', source: src.id, device });
      try {
        await this.#open(device, k, signal);
        return true;
      } catch (e) {
        if (e instanceof LuksError && e.code === 'ELUKS_WRONG_KEY') continue;
        if (e instanceof LuksError && e.code === 'ELUKS_NOT_LUKS')
          throw new Locked(
            'header-corrupt',
            `the LUKS header of ${device} is missing or corrupt; restore the header backup`,
            ['recovery'],
          );
        throw e;
      }
    }
    failures?.push(`${src.id}: wrong key`);
    return false;
  }

  async #unlockExisting(
    device: string,
    dump: LuksDump,
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    const failures: string[] = [];
    const opened = await this.#tryAutomatic(device, signal, failures);
    if (opened !== undefined) return this.#afterOpen(device, opened, signal);
    const waitingFor = this.#waitingFor();
    const wrong = failures.some((f) => f.endsWith('wrong key'));
    throw new Locked(
      wrong ? 'wrong-key' : 'no-key',
      `${device} (LUKS ${dump.uuid}) did not open automatically (${failures.join('; ') || 'no automatic key source'})`,
      waitingFor,
    );
  }

  #waitingFor(): WaitingFor[] {
    const w: WaitingFor[] = [];
    if (this.#d.keySources.some((s) => s.id === 'phone')) w.push('phone');
    w.push('recovery');
    return w;
  }

  /** While locked: wait for the phone, for a console unlock (the mapping appears), or for a restored header. */
  async #waitForUnlock(signal: AbortSignal, why: Locked): Promise<UnlockResult> {
    let last: Locked = why;
    const inner = new AbortController();
    const stop = (): void => {
      inner.abort();
    };
    signal.addEventListener('abort', stop, { once: true });
    try {
      const interactive = this.#d.keySources.filter((s) => s.interactive && s.id !== 'recovery');
      let pending: Promise<{ src: KeySource; keys: readonly Uint8Array[] } | undefined> | undefined;
      const ask = (): Promise<{ src: KeySource; keys: readonly Uint8Array[] } | undefined> => {
        // The phone shows its owner why the hub waits.
        for (const src of interactive)
          if (src instanceof PhoneKeySource) src.setReason(`${last.reason}: ${last.detail}`);
        return Promise.race(
          interactive.map((src) => src.obtain(inner.signal).then((keys) => ({ src, keys }))),
        ).catch(() => undefined);
      };
      if (
        interactive.length > 0 &&
        last.reason !== 'header-corrupt' &&
        last.reason !== 'foreign-data'
      )
        pending = ask();
      while (!signal.aborted) {
        const tick = this.#sleep(this.config.pollMs, inner.signal).then(() => 'tick' as const);
        const got = await Promise.race([tick, pending ?? new Promise<never>(() => undefined)]);
        if (isAborted(signal)) break;
        if (got !== 'tick' && got !== undefined) {
          pending = undefined;
          const device = await this.findDevice(signal);
          if (
            device !== undefined &&
            (await this.#tryKeys(device, got.src, got.keys, signal).catch(() => false))
          )
            return await this.#afterOpen(device, got.src.id, signal);
          this.#locked(
            'wrong-key',
            `the key sent by ${got.src.id} does not open the volume`,
            last.waitingFor,
          );
          pending = ask();
          continue;
        }
        if (got === undefined && pending !== undefined) pending = undefined;
        // Someone unlocked it from the console (vigil storage unlock --recovery), or restored the
        // header, or the device appeared. Cheap checks first: no key is retried while nothing changed.
        if (!(await this.#worthRetry(last, signal))) continue;
        try {
          return await this.#bringUp(signal);
        } catch (e) {
          if (!(e instanceof Locked)) throw e;
          if (e.reason !== last.reason || e.detail !== last.detail)
            this.#locked(e.reason, e.detail, e.waitingFor);
          last = e;
          if (
            pending === undefined &&
            interactive.length > 0 &&
            e.reason !== 'header-corrupt' &&
            e.reason !== 'foreign-data'
          )
            pending = ask();
        }
      }
      return {
        state: 'locked',
        reason: last.reason,
        detail: last.detail,
        waitingFor: last.waitingFor,
      };
    } finally {
      signal.removeEventListener('abort', stop);
      inner.abort();
    }
  }

  async #worthRetry(last: Locked, signal: AbortSignal): Promise<boolean> {
    if (
      (await this.#d.luks.status(this.config.mapperName, signal).catch(() => undefined)) !==
      undefined
    )
      return true;
    switch (last.reason) {
      case 'no-device':
        return (await this.findDevice(signal).catch(() => undefined)) !== undefined;
      case 'header-corrupt':
      case 'foreign-data': {
        const device = await this.findDevice(signal).catch(() => undefined);
        return (
          device !== undefined && (await this.#d.luks.isLuks(device, signal).catch(() => false))
        );
      }
      case 'no-machine-key':
        return (await this.#machineKey(signal)) !== undefined;
      case 'wrong-key':
      case 'no-key':
      case 'error':
        return false;
    }
  }

  /** Unlock with a key from a specific (e.g. console) source, then mount. */
  async unlockWith(source: KeySource, signal: AbortSignal): Promise<UnlockResult> {
    const device = await this.findDevice(signal);
    if (device === undefined) return this.#locked('no-device', 'no data partition found', []);
    try {
      if ((await this.#d.luks.status(this.config.mapperName, signal)) === undefined) {
        if (!(await this.#tryKeys(device, source, await source.obtain(signal), signal)))
          return this.#locked(
            'wrong-key',
            `the ${source.id} key does not open ${device}`,
            this.#waitingFor(),
          );
      }
      return await this.#afterOpen(device, source.id, signal);
    } catch (e) {
      if (e instanceof Locked) return this.#locked(e.reason, e.detail, e.waitingFor);
      throw e;
    }
  }

  // ---- after the mapping exists ---------------------------------------------------------------

  /**
   * The hub and `vigil storage unlock` (another process) may both find the
   * mapping open and go on to mount it: a lock directory in /run (tmpfs, gone
   * after a power cut) serialises mount + first-boot completion. A lock whose
   * owner died is taken over.
   */
  async #withMountLock<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const dir = join(this.#d.paths.runDir, 'storage.lock');
    await mkdir(this.#d.paths.runDir, { recursive: true });
    for (let i = 0; ; i++) {
      try {
        await mkdir(dir);
        await writeFile(join(dir, 'pid'), String(process.pid));
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const pid = Number(await readFile(join(dir, 'pid'), 'utf8').catch(() => 'NaN'));
        if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid))
          await rm(dir, { recursive: true, force: true });
        else if (i > 600 || isAborted(signal))
          throw new Error(`storage lock ${dir} is held by process ${String(pid)}`, { cause: e });
        else await this.#sleep(100, signal);
      }
    }
    try {
      return await fn();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async #afterOpen(
    device: string,
    source: KeySourceId | 'already-open',
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    return this.#withMountLock(signal, () => this.#afterOpenLocked(device, source, signal));
  }

  async #afterOpenLocked(
    device: string,
    source: KeySourceId | 'already-open',
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    const dump = device !== '' ? await this.#d.luks.dump(device, signal) : undefined;
    const firstBoot = dump?.subsystem === SUBSYSTEM_NEW;
    if (firstBoot) {
      this.#emit({ state: 'formatting', step: 'filesystem', device });
      const probe = await this.#d.block.probe(this.mapperPath, signal);
      if (probe.TYPE === undefined) await this.#d.block.mkfsExt4(this.mapperPath, FS_LABEL, signal);
      else if (probe.TYPE !== 'ext4')
        throw new Locked('foreign-data', `the opened volume holds ${probe.TYPE}, not ext4`, []);
    }
    await this.#mount(signal);
    if (firstBoot) await this.#completeFirstBoot(device, dump, signal);
    const s = { state: 'unlocked', mountPoint: this.mountPoint, source } as const;
    this.#emit(s);
    return { ...s, firstBoot };
  }

  async #mount(signal: AbortSignal): Promise<void> {
    await mkdir(this.mountPoint, { recursive: true });
    if (await this.#d.block.isMounted(this.mountPoint)) return;
    await this.#d.block.mount(this.mapperPath, this.mountPoint, signal);
    await chmod(this.mountPoint, 0o700);
  }

  /**
   * Idempotent first-boot completion, each step safe to repeat after a crash:
   * recovery key + phone key (written inside the volume before their keyslots
   * are added, so a crash never leaves a slot whose key nobody has), header
   * backup, provisioning secrets, Vigil marker, then `vigil-ready`.
   */
  async #completeFirstBoot(device: string, dump: LuksDump, signal: AbortSignal): Promise<void> {
    const fs = this.#d.fs;
    const rdir = join(this.mountPoint, RECOVERY_DIR);
    await fs.ensureDir(rdir);
    await chmod(rdir, 0o700);
    const mk = await this.#machineKey(signal);
    const auth = mk?.key;
    if (auth === undefined)
      throw new Locked('no-machine-key', 'cannot finish first boot: no machine key source', []);

    this.#emit({ state: 'formatting', step: 'recovery-keys', device });
    const rkPath = join(rdir, 'recovery-key');
    // A key made just now cannot have a keyslot yet; only a resumed run needs the (slow) test.
    let rk = (await fs.readIfExists(rkPath))?.toString('utf8');
    const rkNew = rk === undefined;
    if (rk === undefined) {
      rk = generateRecoveryKey(this.#random);
      await fs.writeFileAtomic(rkPath, rk, 'recovery-key');
    }
    if (rkNew || !(await this.#d.luks.testKey(device, recoveryKeyBytes(rk), signal))) {
      const meminfo = await (
        this.#d.readMemInfo ?? (() => readFile('/proc/meminfo', 'utf8'))
      )().catch(() => '');
      const pbkdf = passphrasePbkdf(memTotalKiB(meminfo), this.#d.cpuCount ?? cpus().length);
      await this.#d.luks.addKey(device, auth, recoveryKeyBytes(rk), { pbkdf, signal });
    }
    const pkPath = join(rdir, 'phone-key');
    let pk = await fs.readIfExists(pkPath);
    const pkNew = pk?.length !== 32;
    if (pk?.length !== 32) {
      pk = Buffer.from(this.#random(32));
      await fs.writeFileAtomic(pkPath, pk, 'phone-key');
    }
    if (pkNew || !(await this.#d.luks.testKey(device, pk, signal)))
      await this.#d.luks.addKey(device, auth, pk, { pbkdf: MACHINE_KEY_PBKDF, signal });

    this.#emit({ state: 'formatting', step: 'header-backup', device });
    await this.#backupHeaderInto(device, join(rdir, 'luks-header.img'), signal);

    this.#emit({ state: 'formatting', step: 'provisioning-secrets', device });
    await this.moveProvisioningSecrets();

    await fs.writeFileAtomic(
      join(this.mountPoint, VOLUME_MARKER),
      JSON.stringify({
        format: 'vigil-volume',
        version: 1,
        luksUuid: dump.uuid,
        createdAt: this.#now().toISOString(),
      }) + '\n',
      'volume-marker',
    );
    await this.#d.luks.setSubsystem(device, SUBSYSTEM_READY, signal);
    const rec = await this.readRecord();
    const partUuid =
      rec?.partUuid ??
      (await this.#d.block.list(signal).catch(() => [])).find((d) => d.path === device)?.partUuid;
    await this.#writeRecord({
      format: 'vigil-storage-record',
      version: 1,
      device,
      ...(partUuid !== undefined ? { partUuid } : {}),
      luksUuid: dump.uuid,
      phase: 'ready',
      cipher: dump.segments[0]?.encryption ?? rec?.cipher ?? '',
      startedAt: rec?.startedAt ?? this.#now().toISOString(),
      readyAt: this.#now().toISOString(),
    });
    this.#log.info('data volume ready', { device, luksUuid: dump.uuid });
  }

  /** Fresh header backup written durably to `dest` (the backup tool refuses existing files, so go via a temp name). */
  async #backupHeaderInto(device: string, dest: string, signal: AbortSignal): Promise<void> {
    const tmp = `${dest}.new`;
    await rm(tmp, { force: true });
    await this.#d.luks.headerBackup(device, tmp, signal);
    const data = await readFile(tmp);
    await this.#d.fs.writeFileAtomic(dest, data, 'luks-header-backup');
    await rm(tmp, { force: true });
  }

  /**
   * Move every file of the provisioning directory (/boot/vigil-provisioning,
   * plaintext on the boot partition) into the volume, then overwrite the
   * plaintext copies with zeros and remove them. Crash-safe: an existing copy
   * in the volume is never replaced (the plaintext may already be zeroed).
   * Residual risk: flash wear levelling can keep the old blocks (docs/storage.md).
   */
  async moveProvisioningSecrets(): Promise<number> {
    const src = this.#d.paths.provisioningDir;
    let names: string[];
    try {
      names = (await readdir(src)).filter((n) => !n.startsWith('.'));
    } catch {
      return 0;
    }
    const dest = this.secretsDir;
    await this.#d.fs.ensureDir(dest);
    await this.#d.fs.cleanTemp(dest);
    await chmod(dest, 0o700);
    let moved = 0;
    for (const name of names) {
      const from = join(src, name);
      if (!(await stat(from)).isFile()) continue;
      const to = join(dest, name);
      const data = await readFile(from);
      const existing = await this.#d.fs.readIfExists(to);
      if (existing === undefined) {
        await this.#d.fs.writeFileAtomic(to, data, `secret-${name}`);
        await chmod(to, 0o600);
        const back = await readFile(to);
        if (!back.equals(data))
          throw new Error(`copy of ${name} into the volume does not read back equal`);
      }
      await overwriteInPlace(from, data.length);
      await this.#d.fs.remove(from, `secret-plain-${name}`);
      moved += 1;
    }
    return moved;
  }

  // ---- recovery ------------------------------------------------------------------------------

  /** The recovery material stored in the (mounted) volume, for escrow to the phone. */
  async recoveryMaterial(): Promise<RecoveryMaterial> {
    const rdir = join(this.mountPoint, RECOVERY_DIR);
    const marker = MarkerSchema.parse(
      JSON.parse(await readFile(join(this.mountPoint, VOLUME_MARKER), 'utf8')),
    );
    return {
      luksUuid: marker.luksUuid,
      recoveryKey: await readFile(join(rdir, 'recovery-key'), 'utf8'),
      phoneKey: new Uint8Array(await readFile(join(rdir, 'phone-key'))),
      headerBackup: new Uint8Array(await readFile(join(rdir, 'luks-header.img'))),
    };
  }

  /**
   * Hand the recovery material to the phones; remembered inside the volume
   * (`.vigil/recovery/escrowed.json`) so each phone gets it once. Without
   * `recipients`: one broadcast, once per volume (returns true when sent).
   * With them: only the phones not yet recorded (returns those sent to).
   */
  async escrow(port: EscrowPort, signal: AbortSignal): Promise<boolean>;
  async escrow(
    port: EscrowPort,
    signal: AbortSignal,
    opts: { recipients: readonly string[] },
  ): Promise<readonly string[]>;
  async escrow(
    port: EscrowPort,
    signal: AbortSignal,
    opts?: { recipients: readonly string[] },
  ): Promise<boolean | readonly string[]> {
    const flag = join(this.mountPoint, RECOVERY_DIR, 'escrowed.json');
    const raw = await this.#d.fs.readIfExists(flag);
    const prev =
      raw === undefined
        ? undefined
        : EscrowedMarker.safeParse(JSON.parse(raw.toString('utf8'))).data;
    if (opts === undefined) {
      if (raw !== undefined) return false;
      await port.escrow(await this.recoveryMaterial(), signal);
      await this.#d.fs.writeFileAtomic(
        flag,
        JSON.stringify({ escrowedAt: this.#now().toISOString() }) + '\n',
        'escrowed',
      );
      return true;
    }
    const done = new Set(prev?.phones ?? []);
    const todo = opts.recipients.filter((p) => !done.has(p));
    if (todo.length === 0) return [];
    await port.escrow(await this.recoveryMaterial(), signal, todo);
    await this.#d.fs.writeFileAtomic(
      flag,
      JSON.stringify({
        escrowedAt: this.#now().toISOString(),
        phones: [...done, ...todo],
      }) + '\n',
      'escrowed',
    );
    return todo;
  }

  /**
   * Restore the LUKS header from a backup image. Refuses an image that is not
   * a LUKS2 header, or (unless `force`) whose UUID differs from the volume this
   * device was formatted with.
   */
  async restoreHeader(
    file: string,
    opts: { force?: boolean; device?: string; signal?: AbortSignal } = {},
  ): Promise<{ device: string; luksUuid: string }> {
    const device = opts.device ?? (await this.findDevice(opts.signal));
    if (device === undefined)
      throw new LuksError('ELUKS_NO_DEVICE', '', 'no data partition found; pass --device');
    if (!(await this.#d.luks.isLuks(file, opts.signal)))
      throw new LuksError('ELUKS_NOT_LUKS', file, `${file} is not a LUKS header backup`);
    const backup = await this.#d.luks.dump(file, opts.signal);
    const rec = await this.readRecord();
    if (opts.force !== true && rec !== undefined && rec.luksUuid !== backup.uuid) {
      throw new LuksError(
        'ELUKS_FAILED',
        device,
        `header backup is for volume ${backup.uuid}, but ${device} was formatted as ${rec.luksUuid} (use --force to override)`,
      );
    }
    if ((await this.#d.luks.status(this.config.mapperName, opts.signal)) !== undefined)
      throw new LuksError(
        'ELUKS_BUSY',
        device,
        `the volume is open as ${this.mapperPath}; close it before restoring the header`,
      );
    await this.#d.luks.headerRestore(device, file, opts.signal);
    this.#log.warn('LUKS header restored from backup', { device, luksUuid: backup.uuid });
    return { device, luksUuid: backup.uuid };
  }

  /** Unmount and close (used by the CLI and at shutdown). */
  async lock(signal?: AbortSignal): Promise<void> {
    if (await this.#d.block.isMounted(this.mountPoint))
      await this.#d.block.unmount(this.mountPoint, signal);
    if ((await this.#d.luks.status(this.config.mapperName, signal)) !== undefined)
      await this.#d.luks.close(this.config.mapperName, signal);
  }
}

/** Overwrite a file's bytes with zeros in place and fsync (before unlinking it). */
async function overwriteInPlace(path: string, length: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(length), 0, length, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function createStorage(deps: StorageDeps): Storage {
  return new Storage(deps);
}

/**
 * The supervisor's `HubServices.unlockStorage` result shape
 * (firmware/supervisor/hub.ts), without importing the supervisor.
 */
export function hubUnlockResult(
  r: UnlockResult,
):
  | { readonly ok: true; readonly dataDir: string }
  | { readonly ok: false; readonly reason: string; readonly waitingFor?: string } {
  if (r.state === 'unlocked') return { ok: true, dataDir: r.mountPoint };
  const reason = `${r.reason}: ${r.detail}`;
  return r.waitingFor.length > 0
    ? { ok: false, reason, waitingFor: r.waitingFor.join(' or ') }
    : { ok: false, reason };
}
