/**
 * Reading and writing inside disk images without mounting: the partition table
 * through `sfdisk` on a file, FAT partitions through mtools at a byte offset
 * (`image@@offset`). Everything goes through hw/os/run.ts.
 */
import { z } from 'zod';
import { run } from '../hw/os/run.js';
import type { RunOptions, RunResult } from '../hw/os/run.js';
import { VigilError } from '../base/errors.js';
import { SECTOR } from './layout.js';
import type { ReadPartition } from './layout.js';

export type Runner = (
  cmd: string,
  args: readonly string[],
  opts?: RunOptions,
) => Promise<RunResult>;

export class DiskError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EDISK', message, options);
    this.name = 'DiskError';
  }
}

const SfdiskJson = z.object({
  partitiontable: z.object({
    label: z.string(),
    id: z.string(),
    device: z.string(),
    unit: z.string(),
    sectorsize: z.number().optional(),
    partitions: z
      .array(
        z.object({
          node: z.string(),
          start: z.number().int().nonnegative(),
          size: z.number().int().nonnegative(),
          type: z.string(),
          bootable: z.boolean().optional(),
        }),
      )
      .default([]),
  }),
});

export interface PartitionTable {
  readonly label: string;
  readonly diskId: number;
  readonly partitions: readonly ReadPartition[];
}

/** Read an MBR partition table from an image file or a block device. */
export async function readTable(device: string, runner: Runner = run): Promise<PartitionTable> {
  let out: RunResult;
  try {
    out = await runner('sfdisk', ['--json', device], { timeoutMs: 30_000 });
  } catch (e) {
    throw new DiskError(`cannot read the partition table of ${device}`, { cause: e });
  }
  const parsed = SfdiskJson.safeParse(JSON.parse(out.stdout.toString('utf8') || '{}'));
  if (!parsed.success) throw new DiskError(`${device}: unexpected sfdisk output`);
  const t = parsed.data.partitiontable;
  if (t.label !== 'dos')
    throw new DiskError(`${device}: not an MBR (dos) partition table (${t.label})`);
  const partitions = t.partitions.map((p): ReadPartition => {
    const m = /(\d+)$/.exec(p.node);
    if (!m?.[1]) throw new DiskError(`${device}: cannot tell the number of partition ${p.node}`);
    return {
      node: p.node,
      number: Number(m[1]),
      start: p.start,
      size: p.size,
      type: p.type,
      bootable: p.bootable ?? false,
    };
  });
  return { label: t.label, diskId: Number.parseInt(t.id, 16), partitions };
}

export function partitionNumbered(table: PartitionTable, n: number, device: string): ReadPartition {
  const p = table.partitions.find((x) => x.number === n);
  if (!p) throw new DiskError(`${device} has no partition ${n}`);
  return p;
}

/** mtools' image spec for a FAT filesystem at a partition's offset. */
export function mtoolsTarget(image: string, p: ReadPartition): string {
  return `${image}@@${p.start * SECTOR}`;
}

/** Environment for mtools: no geometry check (image files), fixed timestamps when given. */
export function mtoolsEnv(sourceDateEpoch?: number): Record<string, string | undefined> {
  return {
    ...process.env,
    MTOOLS_SKIP_CHECK: '1',
    ...(sourceDateEpoch !== undefined ? { SOURCE_DATE_EPOCH: String(sourceDateEpoch) } : {}),
  };
}

/** Volume label of a FAT filesystem (via minfo), trimmed; undefined if none. */
export async function fatLabel(target: string, runner: Runner = run): Promise<string | undefined> {
  const r = await runner('minfo', ['-i', target, '::'], { env: mtoolsEnv(), timeoutMs: 30_000 });
  const m = /disk label="([^"]*)"/.exec(r.stdout.toString('utf8'));
  const label = m?.[1]?.trim();
  return label === undefined || label === '' ? undefined : label;
}

/** Recursive file list of a FAT filesystem: paths relative to its root, sorted. */
export async function fatList(target: string, runner: Runner = run): Promise<string[]> {
  const r = await runner('mdir', ['-/', '-b', '-i', target, '::'], {
    env: mtoolsEnv(),
    timeoutMs: 60_000,
    okExitCodes: [0, 1],
  });
  return r.stdout
    .toString('utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('::/'))
    .map((l) => l.slice(3))
    .filter((l) => l !== '' && !l.endsWith('/'))
    .sort();
}

/** Contents of one file in a FAT filesystem. */
export async function fatRead(target: string, path: string, runner: Runner = run): Promise<Buffer> {
  const r = await runner('mtype', ['-i', target, `::/${path}`], {
    env: mtoolsEnv(),
    timeoutMs: 60_000,
    maxStdoutBytes: 512 * 1024 * 1024,
  });
  return r.stdout;
}
