/**
 * The data volume: first-boot creation, unlock at every later boot, recovery
 * material, and the hand-over to the supervisor.
 *
 *   const storage = createStorage(deps);
 *   storage.onStatus((s) => ...);              // 'locked' tells the phone / console why
 *   const r = await storage.unlockAndMount(signal);
 *   // {state:'unlocked', mountPoint, source} | {state:'locked', reason, waitingFor}
 *
 * What to do with the volume is decided by the pure planner (plan.ts, which
 * also states the never-format-live-data rule); this class looks up the facts
 * it asks for and runs its steps: unlocking with the key sources, waiting while
 * locked, mounting. First-boot formatting is in first-boot.ts, recovery
 * material, escrow and header restore in recovery.ts.
 */
import { randomBytes } from 'node:crypto';
import { isAborted, pause } from '../../base/async.js';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { reasonOf } from '../../base/errors.js';
import { SimulatedCrash } from '../../hw/os/fs.js';
import type { BlockDeviceInfo } from '../../hw/luks/block.js';
import { LuksError } from '../../hw/luks/luks.js';
import type { Luks, LuksDump } from '../../hw/luks/luks.js';
import type { Logger } from '../../base/logger.js';
import { PhoneKeySource } from './key-sources.js';
import type { KeySource, KeySourceId } from './key-sources.js';
import { DEFAULT_STORAGE_CONFIG, Locked, readRecord } from './context.js';
import type { StorageConfig, StorageContext, StorageDeps, StorageRecord } from './context.js';
import {
  completeFirstBoot,
  ensureFilesystem,
  formatVolume,
  isFirstBoot,
  moveProvisioningSecrets,
} from './first-boot.js';
import { LUKS_LABEL, SECRETS_DIR, planVolume } from './plan.js';
import type {
  LockedReason,
  StorageStatus,
  UnlockResult,
  VolumeFacts,
  VolumeStep,
  WaitingFor,
} from './plan.js';
import { escrowOnce, recoveryMaterial, restoreHeader } from './recovery.js';
import type { EscrowPort, RecoveryMaterial } from './recovery.js';

// The storage API as it was before plan/context/first-boot/recovery were split out.
export {
  FS_LABEL,
  KEYSLOTS_SIZE,
  LUKS_LABEL,
  RECOVERY_DIR,
  SECRETS_DIR,
  SUBSYSTEM_NEW,
  SUBSYSTEM_READY,
  VOLUME_MARKER,
  hubUnlockResult,
} from './plan.js';
export type { LockedReason, StorageStatus, UnlockResult, WaitingFor } from './plan.js';
export { DEFAULT_STORAGE_CONFIG } from './context.js';
export type { StorageConfig, StorageDeps, StorageRecord } from './context.js';
export type { EscrowPort, RecoveryMaterial } from './recovery.js';

/** The longest gap between two asks of the automatic key sources while locked with `no-key`. */
const RECHECK_MAX_MS = 60_000;

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
  readonly #ctx: StorageContext;
  /** While locked for want of a key: when the automatic sources are asked again, and the gap after. */
  readonly #recheck = { atMs: 0, gapMs: 0 };
  #status: StorageStatus = { state: 'finding-device' };

  constructor(deps: StorageDeps) {
    this.#d = deps;
    this.config = { ...DEFAULT_STORAGE_CONFIG, ...deps.config };
    this.#log = deps.logger.child('storage');
    this.#random = deps.random ?? ((n) => new Uint8Array(randomBytes(n)));
    this.#sleep = deps.sleep ?? pause;
    this.#now = deps.now ?? (() => new Date());
    this.#ctx = {
      deps,
      config: this.config,
      log: this.#log,
      mountPoint: this.mountPoint,
      mapperPath: this.mapperPath,
      recordPath: this.recordPath,
      random: this.#random,
      now: this.#now,
      emit: (s) => {
        this.#emit(s);
      },
      findDevice: (signal) => this.findDevice(signal),
      machineKey: (signal) => this.#machineKey(signal),
    };
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
    return readRecord(this.#ctx);
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

  /** Look up the facts the planner (plan.ts) asks for, one at a time, and run the step it settles on. */
  async #bringUp(signal: AbortSignal): Promise<UnlockResult> {
    this.#emit({ state: 'finding-device' });
    let facts: VolumeFacts<StorageRecord> = { partLabel: this.config.partLabel };
    for (;;) {
      const step: VolumeStep<StorageRecord> = planVolume(facts);
      if (step.kind !== 'look') return this.#run(step, signal);
      facts = { ...facts, ...(await this.#lookUp(step.at, facts, signal)) };
    }
  }

  async #lookUp(
    at: Extract<VolumeStep, { kind: 'look' }>['at'],
    f: VolumeFacts<StorageRecord>,
    signal: AbortSignal,
  ): Promise<Partial<VolumeFacts<StorageRecord>>> {
    const device = f.device ?? '';
    switch (at) {
      case 'mapping': {
        const s = await this.#d.luks.status(this.config.mapperName, signal).catch(() => undefined);
        return { mapping: s === undefined ? null : { device: s.device } };
      }
      case 'device':
        return { device: (await this.findDevice(signal)) ?? null };
      case 'record':
        return { record: (await this.readRecord()) ?? null };
      case 'is-luks':
        return { isLuks: await this.#d.luks.isLuks(device, signal) };
      case 'header':
        return { header: await this.#d.luks.dump(device, signal) };
      case 'same-partition':
        return {
          samePartition:
            f.record?.partUuid !== undefined &&
            (await this.#d.block.list(signal).catch(() => [])).some(
              (d) => d.path === device && d.partUuid === f.record?.partUuid,
            ),
        };
      case 'fs-type':
        return { fsType: (await this.#d.block.probe(device, signal)).TYPE ?? null };
      case 'content':
        return { content: await this.#d.block.sample(device) };
    }
  }

  async #run(
    step: Exclude<VolumeStep<StorageRecord>, { kind: 'look' }>,
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    switch (step.kind) {
      case 'adopt': {
        const device = step.device ?? (await this.findDevice(signal)) ?? '';
        return this.#afterOpen(device, 'already-open', signal);
      }
      case 'locked':
        throw new Locked(step.reason, step.detail, step.waitingFor);
      case 'format':
        if (step.why === 'interrupted-format')
          this.#log.warn('resuming an interrupted first boot: luksFormat did not complete', {
            device: step.device,
          });
        return this.#format(step.device, step.previous, signal);
      case 'resume-first-boot': {
        // Our own first boot was interrupted after luksFormat. Resume with the machine key if it opens.
        const opened = await this.#tryAutomatic(step.device, signal);
        if (opened !== undefined) return this.#afterOpen(step.device, opened, signal);
        this.#log.warn(
          'interrupted first boot left a volume no machine key opens; it never held data: formatting again',
          {
            device: step.device,
            luksUuid: step.luksUuid,
          },
        );
        return this.#format(step.device, step.record, signal);
      }
      case 'unlock':
        return this.#unlockExisting(step.device, step.luksUuid, signal);
    }
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
    const mk = await formatVolume(this.#ctx, device, previous, signal);
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
        if (e instanceof LuksError && e.code === 'ELUKS_NO_KEYSLOT') {
          // no key of any source can open it: say so once, do not try the rest
          failures?.push(`${src.id}: ${device} has no usable keyslot`);
          return false;
        }
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
    luksUuid: string,
    signal: AbortSignal,
  ): Promise<UnlockResult> {
    const failures: string[] = [];
    const opened = await this.#tryAutomatic(device, signal, failures);
    if (opened !== undefined) return this.#afterOpen(device, opened, signal);
    const waitingFor = this.#waitingFor();
    const wrong = failures.some((f) => f.endsWith('wrong key'));
    throw new Locked(
      wrong ? 'wrong-key' : 'no-key',
      `${device} (LUKS ${luksUuid}) did not open automatically (${failures.join('; ') || 'no automatic key source'})`,
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
      case 'no-key':
        return this.#automaticKeyAppeared(signal);
      case 'wrong-key':
      case 'error':
        return false;
    }
  }

  /**
   * `no-key` means no automatic source had a key at boot, which may be passing: a source that
   * failed to answer (an OTP read, a mailbox under load) is a read, not a verdict. Asked again
   * with a gap that doubles from pollMs up to RECHECK_MAX_MS, and only its key is fetched here
   * (a cheap read): the volume is opened only once one exists. Without this, a hub whose key
   * source failed once at boot stayed locked until a person came with the phone or the
   * recovery key. `wrong-key` is not asked again: the same source gives the same key.
   */
  async #automaticKeyAppeared(signal: AbortSignal): Promise<boolean> {
    const now = this.#now().getTime();
    if (now < this.#recheck.atMs) return false;
    this.#recheck.gapMs = Math.min(
      Math.max(this.#recheck.gapMs * 2, this.config.pollMs),
      RECHECK_MAX_MS,
    );
    this.#recheck.atMs = now + this.#recheck.gapMs;
    return (await this.#machineKey(signal)) !== undefined;
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
    const dump: LuksDump | undefined =
      device !== '' ? await this.#d.luks.dump(device, signal) : undefined;
    const firstBoot = isFirstBoot(dump);
    if (firstBoot) await ensureFilesystem(this.#ctx, device, signal);
    await this.#mount(signal);
    if (firstBoot) await completeFirstBoot(this.#ctx, device, dump, signal);
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
   * Move every file of the provisioning directory into the volume and wipe
   * the plaintext copies (first-boot.ts).
   */
  async moveProvisioningSecrets(): Promise<number> {
    return moveProvisioningSecrets(this.#ctx);
  }

  // ---- recovery (recovery.ts) -----------------------------------------------------------------

  /** The recovery material stored in the (mounted) volume, for escrow to the phone. */
  async recoveryMaterial(): Promise<RecoveryMaterial> {
    return recoveryMaterial(this.#ctx);
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
    return escrowOnce(this.#ctx, port, signal, opts);
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
    return restoreHeader(this.#ctx, file, opts);
  }

  /** Unmount and close (used by the CLI and at shutdown). */
  async lock(signal?: AbortSignal): Promise<void> {
    if (await this.#d.block.isMounted(this.mountPoint))
      await this.#d.block.unmount(this.mountPoint, signal);
    if ((await this.#d.luks.status(this.config.mapperName, signal)) !== undefined)
      await this.#d.luks.close(this.config.mapperName, signal);
  }
}

export function createStorage(deps: StorageDeps): Storage {
  return new Storage(deps);
}
