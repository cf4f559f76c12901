/**
 * What to do with the data volume, decided as data: `planVolume(facts)` looks
 * at what has been learnt about the device so far and returns the next step —
 * another fact to look up, or what to do (adopt an open mapping, format,
 * resume an interrupted first boot, unlock, or stay locked and say why). It
 * performs no I/O; Storage (storage.ts) looks facts up and runs the steps, in
 * the spirit of the supervisor's pure state machine (firmware/supervisor/state.ts).
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
import type { DeviceContent } from '../../hw/luks/block.js';
import type { KeySourceId } from './key-sources.js';

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

/** The part of the first-boot record (context.ts) the planner reads. */
export interface PlannedRecord {
  readonly device: string;
  readonly luksUuid: string;
  readonly phase: 'formatting' | 'ready';
}

/**
 * What is known so far. An absent field has not been looked up yet; `null`
 * means looked up and found nothing.
 */
export interface VolumeFacts<R extends PlannedRecord = PlannedRecord> {
  /** An open mapping of the volume (and the device it reports), or null. */
  readonly mapping?: { readonly device: string | undefined } | null;
  readonly partLabel: string;
  readonly device?: string | null;
  readonly record?: R | null;
  readonly isLuks?: boolean;
  readonly header?: { readonly uuid: string; readonly subsystem: string | undefined };
  /** The record's partition UUID is the device's (read only when the paths differ). */
  readonly samePartition?: boolean;
  /** blkid's TYPE of the raw device, or null when nothing is recognised. */
  readonly fsType?: string | null;
  readonly content?: DeviceContent;
}

export type Fact =
  'mapping' | 'device' | 'record' | 'is-luks' | 'header' | 'same-partition' | 'fs-type' | 'content';

export type VolumeStep<R extends PlannedRecord = PlannedRecord> =
  | { readonly kind: 'look'; readonly at: Fact }
  /** The mapping is already open (the CLI or an earlier run opened it): mount it. */
  | { readonly kind: 'adopt'; readonly device: string | undefined }
  /**
   * luksFormat the device. `why`: a blank device; the record's own format
   * that never completed; our `vigil-new` volume that no machine key opens.
   */
  | {
      readonly kind: 'format';
      readonly device: string;
      readonly previous: R | undefined;
      readonly why: 'blank' | 'interrupted-format' | 'new-volume-no-key';
    }
  /** Our first boot stopped after luksFormat: open with the machine key, else format again. */
  | {
      readonly kind: 'resume-first-boot';
      readonly device: string;
      readonly record: R;
      readonly luksUuid: string;
    }
  /** An existing volume: try the automatic key sources. */
  | { readonly kind: 'unlock'; readonly device: string; readonly luksUuid: string }
  | {
      readonly kind: 'locked';
      readonly reason: LockedReason;
      readonly detail: string;
      readonly waitingFor: readonly WaitingFor[];
    };

const look = (at: Fact): { readonly kind: 'look'; readonly at: Fact } => ({ kind: 'look', at });

/** The next step for the volume, given what is known so far. Pure. */
export function planVolume<R extends PlannedRecord>(f: VolumeFacts<R>): VolumeStep<R> {
  if (f.mapping === undefined) return look('mapping');
  if (f.mapping !== null) return { kind: 'adopt', device: f.mapping.device };
  if (f.device === undefined) return look('device');
  if (f.device === null)
    return {
      kind: 'locked',
      reason: 'no-device',
      detail: `no data partition found (partition label "${f.partLabel}")`,
      waitingFor: [],
    };
  const device = f.device;
  if (f.record === undefined) return look('record');
  const rec = f.record ?? undefined;
  if (f.isLuks === undefined) return look('is-luks');
  if (f.isLuks) {
    if (f.header === undefined) return look('header');
    if (
      f.header.subsystem === SUBSYSTEM_NEW &&
      rec?.luksUuid === f.header.uuid &&
      rec.phase === 'formatting'
    )
      return { kind: 'resume-first-boot', device, record: rec, luksUuid: f.header.uuid };
    return { kind: 'unlock', device, luksUuid: f.header.uuid };
  }
  // No LUKS header. Ours (by the record) or not?
  let ours = false;
  if (rec !== undefined) {
    if (rec.device === device) ours = true;
    else if (f.samePartition === undefined) return look('same-partition');
    else ours = f.samePartition;
  }
  if (ours && rec?.phase === 'ready')
    return {
      kind: 'locked',
      reason: 'header-corrupt',
      detail: `the LUKS header of ${device} is missing or corrupt; restore it with "vigil storage recovery restore-header --from <backup>"`,
      waitingFor: ['recovery'],
    };
  if (ours && rec?.phase === 'formatting')
    return { kind: 'format', device, previous: rec, why: 'interrupted-format' };
  if (f.fsType === undefined) return look('fs-type');
  if (f.fsType !== null)
    return {
      kind: 'locked',
      reason: 'foreign-data',
      detail: `${device} holds a ${f.fsType} filesystem, not a Vigil volume; refusing to format it`,
      waitingFor: [],
    };
  if (f.content === undefined) return look('content');
  if (f.content === 'data')
    return {
      kind: 'locked',
      reason: 'foreign-data',
      detail: `${device} is not blank (no LUKS header, but non-zero data): if it is a Vigil volume with a damaged header, restore the header backup; refusing to format`,
      waitingFor: ['recovery'],
    };
  return { kind: 'format', device, previous: undefined, why: 'blank' };
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
