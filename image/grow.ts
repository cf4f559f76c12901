/**
 * First boot: grow the data partition (the last logical partition) and the
 * extended partition around it to the end of the card. The partition stays
 * unformatted: the storage code makes LUKS2 on it afterwards. Runs once
 * (vigil-grow-data.service, flag file /var/lib/vigil/.data-partition-grown).
 */
import { readFile, readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { DurableFs } from '../hw/os/fs.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { run } from '../hw/os/run.js';
import { VigilError } from '../base/errors.js';
import type { PartitionTable, Runner } from './disk.js';
import { readTable } from './disk.js';
import { DISK_ID, MIB_SECTORS, SECTOR, planLayout, partUuid } from './layout.js';
import { IMAGE_PATHS } from './overlay.js';

export class GrowError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EGROW', message, options);
    this.name = 'GrowError';
  }
}

const PLAN = planLayout({ bootMiB: 32, rootMiB: 1, provisioningMiB: 1, dataMiB: 1 });
export const EXTENDED_PARTITION = PLAN.partitions.find((p) => p.role === 'extended')?.number ?? 4;
export const DATA_PARTITION = PLAN.partitions.find((p) => p.role === 'data')?.number ?? 7;
export const DATA_PARTUUID = partUuid(PLAN, 'data');

export interface GrowPlan {
  /** Nothing to do: the data partition already reaches the end. */
  readonly done: boolean;
  readonly extended: { readonly start: number; readonly size: number };
  readonly data: { readonly start: number; readonly size: number };
  readonly oldDataSize: number;
}

/** Pure: new sizes so the data partition ends at the last whole MiB of the disk. */
export function planGrowth(table: PartitionTable, diskSectors: number): GrowPlan {
  if (table.diskId !== DISK_ID)
    throw new GrowError(`not a Vigil disk (identifier 0x${table.diskId.toString(16)})`);
  const ext = table.partitions.find((p) => p.number === EXTENDED_PARTITION);
  const data = table.partitions.find((p) => p.number === DATA_PARTITION);
  if (!ext || !data)
    throw new GrowError(
      `no extended partition ${EXTENDED_PARTITION} or data partition ${DATA_PARTITION}`,
    );
  const last = Math.max(
    ...table.partitions.map((p) => p.start + (p.number === EXTENDED_PARTITION ? 0 : p.size)),
  );
  if (data.start + data.size !== last)
    throw new GrowError(`data partition ${DATA_PARTITION} is not the last partition`);
  const end = Math.floor(diskSectors / MIB_SECTORS) * MIB_SECTORS;
  if (end < data.start + data.size)
    throw new GrowError(`disk (${diskSectors} sectors) is smaller than its partition table`);
  const done = end - (data.start + data.size) < MIB_SECTORS;
  return {
    done,
    extended: { start: ext.start, size: done ? ext.size : end - ext.start },
    data: { start: data.start, size: done ? data.size : end - data.start },
    oldDataSize: data.size,
  };
}

/** Apply a plan to a disk or an image file with sfdisk (no kernel re-read here). */
export async function applyGrowth(
  device: string,
  plan: GrowPlan,
  runner: Runner = run,
): Promise<void> {
  if (plan.done) return;
  const sf = async (n: number, start: number, size: number): Promise<void> => {
    await runner(
      'sfdisk',
      ['--no-reread', '--no-tell-kernel', '--quiet', '-N', String(n), device],
      {
        stdin: `${start},${size}\n`,
        timeoutMs: 60_000,
      },
    );
  };
  await sf(EXTENDED_PARTITION, plan.extended.start, plan.extended.size);
  await sf(DATA_PARTITION, plan.data.start, plan.data.size);
}

/** The disk holding the data partition: /dev/disk/by-partuuid/<id> -> /dev/mmcblk0p7 -> /dev/mmcblk0. */
export async function findDataDisk(paths: HostPaths): Promise<string> {
  let part: string;
  try {
    part = await realpath(paths.host(`/dev/disk/by-partuuid/${DATA_PARTUUID}`));
  } catch (e) {
    throw new GrowError(
      `no partition with PARTUUID ${DATA_PARTUUID} (not booted from a Vigil image?)`,
      { cause: e },
    );
  }
  const sysLink = await readlink(paths.host(`/sys/class/block/${basename(part)}`));
  return paths.host(`/dev/${basename(dirname(sysLink))}`);
}

async function sectorsOf(device: string, runner: Runner): Promise<number> {
  const st = await stat(device);
  if (st.isFile()) return Math.floor(st.size / SECTOR);
  const r = await runner('blockdev', ['--getsz', device], { timeoutMs: 10_000 });
  return Number(r.stdout.toString('utf8').trim());
}

export interface GrowOnDeviceOptions {
  readonly device?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly runner?: Runner;
  readonly fs?: DurableFs;
}

export async function growDataOnDevice(
  o: GrowOnDeviceOptions,
): Promise<{ message: string; plan: GrowPlan }> {
  const runner = o.runner ?? run;
  const paths = HostPaths.fromEnv(o.env);
  const fs = o.fs ?? new DurableFs();
  const flag = paths.host(IMAGE_PATHS.growDone);
  const device = o.device ?? (await findDataDisk(paths));
  const table = await readTable(device, runner);
  const plan = planGrowth(table, await sectorsOf(device, runner));
  await applyGrowth(device, plan, runner);
  const st = await stat(device);
  if (!plan.done && !st.isFile()) {
    // tell the kernel about the new size of the (unused) data partition only: root is busy
    await runner('partx', ['--update', '--nr', String(DATA_PARTITION), device], {
      timeoutMs: 30_000,
    });
  }
  await fs.ensureDir(dirname(flag));
  await fs.writeFileAtomic(flag, `${plan.data.size}\n`, 'grow-flag');
  const mib = (n: number): string => `${Math.round(n / MIB_SECTORS)} MiB`;
  return {
    plan,
    message: plan.done
      ? `data partition already fills ${device} (${mib(plan.data.size)})`
      : `data partition ${DATA_PARTITION} on ${device} grown from ${mib(plan.oldDataSize)} to ${mib(plan.data.size)}`,
  };
}

/** For tests and the twin report: the flag file's content. */
export async function grownSize(paths: HostPaths): Promise<number | undefined> {
  try {
    return Number((await readFile(paths.host(IMAGE_PATHS.growDone), 'utf8')).trim());
  } catch {
    return undefined;
  }
}
