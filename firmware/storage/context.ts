/**
 * What the storage modules share: configuration, dependencies, the first-boot
 * record on the root filesystem, and the context Storage (storage.ts) hands to
 * first-boot formatting (first-boot.ts) and recovery (recovery.ts).
 */
import { z } from 'zod';
import { DATA_VOLUME_NAME } from '../../protocol/data-volume.js';
import type { DurableFs } from '../../hw/os/fs.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import type { BlockDevices } from '../../hw/luks/block.js';
import type { Luks } from '../../hw/luks/luks.js';
import type { Logger } from '../../base/logger.js';
import type { KeySource, KeySourceId } from './key-sources.js';
import type { CipherChoice } from './params.js';
import type { LockedReason, StorageStatus, WaitingFor } from './plan.js';

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

/** The volume cannot come up; Storage reports `locked` with these. */
export class Locked extends Error {
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

/** Storage's view of itself, handed to first-boot.ts and recovery.ts. */
export interface StorageContext {
  readonly deps: StorageDeps;
  readonly config: StorageConfig;
  readonly log: Logger;
  readonly mountPoint: string;
  readonly mapperPath: string;
  readonly recordPath: string;
  readonly random: (n: number) => Uint8Array;
  readonly now: () => Date;
  emit(s: StorageStatus): void;
  findDevice(signal?: AbortSignal): Promise<string | undefined>;
  machineKey(signal: AbortSignal): Promise<{ id: KeySourceId; key: Uint8Array } | undefined>;
}

export async function readRecord(
  ctx: Pick<StorageContext, 'deps' | 'log' | 'recordPath'>,
): Promise<StorageRecord | undefined> {
  const b = await ctx.deps.fs.readIfExists(ctx.recordPath);
  if (b === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(b.toString('utf8'));
  } catch {
    ctx.log.error('storage record is not JSON; ignoring it', { path: ctx.recordPath });
    return undefined;
  }
  const r = RecordSchema.safeParse(raw);
  if (!r.success) {
    ctx.log.error('storage record is invalid; ignoring it', { path: ctx.recordPath });
    return undefined;
  }
  return r.data;
}

export async function writeRecord(
  ctx: Pick<StorageContext, 'deps' | 'recordPath'>,
  r: StorageRecord,
): Promise<void> {
  await ctx.deps.fs.writeFileAtomic(
    ctx.recordPath,
    JSON.stringify(r, null, 2) + '\n',
    'storage-record',
  );
}
