/**
 * The block-device side of the data volume: discovery (lsblk/blkid JSON and
 * export formats), "is this device blank?" sampling, mkfs.ext4, mount and
 * umount. `UtilLinuxBlockDevices` drives util-linux/e2fsprogs through
 * hw/os/run.ts; `FakeBlockDevices` (fake-block.ts) backs controller tests.
 */
import { open, statfs } from 'node:fs/promises';
import { z } from 'zod';
import { VigilError } from '../../base/errors.js';
import { CommandError, run } from '../os/run.js';
import type { Runner } from './cryptsetup.js';

export interface BlockDeviceInfo {
  readonly path: string;
  readonly type: string;
  readonly sizeBytes: number;
  readonly partLabel: string | undefined;
  readonly partType: string | undefined;
  readonly partUuid: string | undefined;
  readonly fsType: string | undefined;
  readonly label: string | undefined;
}

/** What the first bytes and a few samples of a device say about it. */
export type DeviceContent =
  /** Every sampled byte is zero: never written. */
  | 'zero'
  /** Starts with the image builder's "blank data partition" marker. */
  | 'vigil-blank'
  /** Anything else: treat as data that must not be formatted. */
  | 'data';

export const VIGIL_BLANK_MARKER = 'VIGIL-BLANK-DATA-PARTITION-V1\n';

export interface FsStats {
  readonly totalBytes: number;
  readonly freeBytes: number;
}

export interface BlockDevices {
  list(signal?: AbortSignal): Promise<BlockDeviceInfo[]>;
  /** Low-level probe (blkid -p): e.g. {TYPE: 'ext4'}; {} when nothing is recognised. */
  probe(path: string, signal?: AbortSignal): Promise<Readonly<Record<string, string>>>;
  sample(path: string): Promise<DeviceContent>;
  mkfsExt4(path: string, label: string, signal?: AbortSignal): Promise<void>;
  /** e2fsck -p; returns false when the filesystem needs manual repair. */
  fsck(path: string, signal?: AbortSignal): Promise<boolean>;
  isMounted(mountPoint: string): Promise<boolean>;
  mount(path: string, mountPoint: string, signal?: AbortSignal): Promise<void>;
  unmount(mountPoint: string, signal?: AbortSignal): Promise<void>;
  fsStats(mountPoint: string): Promise<FsStats>;
}

export class BlockError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EBLOCK', message, options);
    this.name = 'BlockError';
  }
}

const LsblkSchema = z.object({
  blockdevices: z.array(
    z
      .object({
        path: z.string(),
        type: z.string(),
        size: z.union([z.number(), z.string()]).nullable().optional(),
        partlabel: z.string().nullable().optional(),
        parttype: z.string().nullable().optional(),
        partuuid: z.string().nullable().optional(),
        fstype: z.string().nullable().optional(),
        label: z.string().nullable().optional(),
      })
      .loose(),
  ),
});

const opt = (v: string | null | undefined): string | undefined =>
  v === null || v === undefined || v === '' ? undefined : v;

/** Parse `lsblk --json --list --bytes --output PATH,TYPE,SIZE,PARTLABEL,PARTTYPE,PARTUUID,FSTYPE,LABEL`. */
export function parseLsblk(json: string): BlockDeviceInfo[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new BlockError('lsblk printed invalid JSON', { cause: e });
  }
  const r = LsblkSchema.safeParse(raw);
  if (!r.success) throw new BlockError(`unexpected lsblk output: ${r.error.message}`);
  return r.data.blockdevices.map((d) => ({
    path: d.path,
    type: d.type,
    sizeBytes: Number(d.size ?? 0),
    partLabel: opt(d.partlabel),
    partType: opt(d.parttype)?.toLowerCase(),
    partUuid: opt(d.partuuid)?.toLowerCase(),
    fsType: opt(d.fstype),
    label: opt(d.label),
  }));
}

/** Parse `blkid -o export` output (KEY=value lines). */
export function parseExport(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

const SAMPLE_BYTES = 64 * 1024;
const SAMPLE_POINTS = 64;

export class UtilLinuxBlockDevices implements BlockDevices {
  readonly #run: Runner;
  constructor(opts: { runner?: Runner } = {}) {
    this.#run = opts.runner ?? run;
  }

  #env(): Record<string, string | undefined> {
    return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  }

  async list(signal?: AbortSignal): Promise<BlockDeviceInfo[]> {
    const r = await this.#run(
      'lsblk',
      [
        '--json',
        '--list',
        '--bytes',
        '--output',
        'PATH,TYPE,SIZE,PARTLABEL,PARTTYPE,PARTUUID,FSTYPE,LABEL',
      ],
      { env: this.#env(), timeoutMs: 30_000, ...(signal ? { signal } : {}) },
    );
    const devs = parseLsblk(r.stdout.toString('utf8'));
    // Without udev (early boot, the test VM) lsblk may leave partition fields empty: ask blkid directly.
    return Promise.all(
      devs.map(async (d) => {
        if (d.type !== 'part' || d.partLabel !== undefined) return d;
        const p: Readonly<Record<string, string | undefined>> = await this.probe(
          d.path,
          signal,
        ).catch(() => ({}));
        return {
          ...d,
          partLabel: p.PART_ENTRY_NAME ?? d.partLabel,
          partType: p.PART_ENTRY_TYPE?.toLowerCase() ?? d.partType,
          partUuid: p.PART_ENTRY_UUID?.toLowerCase() ?? d.partUuid,
          fsType: d.fsType ?? p.TYPE,
          label: d.label ?? p.LABEL,
        };
      }),
    );
  }

  async probe(path: string, signal?: AbortSignal): Promise<Readonly<Record<string, string>>> {
    // exit 2: nothing recognised
    const r = await this.#run('blkid', ['--probe', '--output', 'export', path], {
      env: this.#env(),
      timeoutMs: 30_000,
      okExitCodes: [0, 2],
      ...(signal ? { signal } : {}),
    });
    return r.exitCode === 0 ? parseExport(r.stdout.toString('utf8')) : {};
  }

  async sample(path: string): Promise<DeviceContent> {
    return sampleDevice(path);
  }

  async mkfsExt4(path: string, label: string, signal?: AbortSignal): Promise<void> {
    // -F: the target is a dm-crypt mapping we just made; lazy init keeps first boot short on SD cards.
    await this.#run(
      'mkfs.ext4',
      ['-q', '-F', '-L', label, '-E', 'lazy_itable_init=1,lazy_journal_init=1', '-m', '1', path],
      {
        env: this.#env(),
        timeoutMs: 10 * 60_000,
        ...(signal ? { signal } : {}),
      },
    );
  }

  async fsck(path: string, signal?: AbortSignal): Promise<boolean> {
    // e2fsck exit: 0 clean, 1 fixed, 2 fixed+reboot, 4+ uncorrected
    const r = await this.#run('e2fsck', ['-p', path], {
      env: this.#env(),
      timeoutMs: 30 * 60_000,
      okExitCodes: [0, 1, 2, 4, 8],
      ...(signal ? { signal } : {}),
    });
    return r.exitCode < 4;
  }

  async isMounted(mountPoint: string): Promise<boolean> {
    const r = await this.#run(
      'findmnt',
      ['--noheadings', '--output', 'TARGET', '--mountpoint', mountPoint],
      {
        env: this.#env(),
        timeoutMs: 10_000,
        okExitCodes: [0, 1],
      },
    );
    return r.exitCode === 0 && r.stdout.toString('utf8').trim() !== '';
  }

  async mount(path: string, mountPoint: string, signal?: AbortSignal): Promise<void> {
    await this.#run(
      'mount',
      ['-t', 'ext4', '-o', 'nodev,nosuid,noexec,noatime', path, mountPoint],
      {
        env: this.#env(),
        timeoutMs: 60_000,
        ...(signal ? { signal } : {}),
      },
    );
  }

  async unmount(mountPoint: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#run('umount', [mountPoint], {
        env: this.#env(),
        timeoutMs: 60_000,
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (e instanceof CommandError && /not mounted/.test(e.stderr)) return;
      throw e;
    }
  }

  async fsStats(mountPoint: string): Promise<FsStats> {
    const s = await statfs(mountPoint);
    return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
  }
}

/** Read the head and a few spread samples of a device or file. */
export async function sampleDevice(path: string): Promise<DeviceContent> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(SAMPLE_BYTES);
    const { bytesRead } = await fh.read(head, 0, SAMPLE_BYTES, 0);
    if (head.subarray(0, VIGIL_BLANK_MARKER.length).toString('latin1') === VIGIL_BLANK_MARKER)
      return 'vigil-blank';
    if (!isZero(head.subarray(0, bytesRead))) return 'data';
    // size: files report it in stat; block devices via seeking is not exposed, so read until short.
    const size = await deviceSize(fh);
    for (let i = 1; i <= SAMPLE_POINTS; i++) {
      const pos = Math.floor((size * i) / (SAMPLE_POINTS + 1) / 4096) * 4096;
      const b = Buffer.alloc(Math.min(SAMPLE_BYTES, Math.max(0, size - pos)));
      if (b.length === 0) continue;
      await fh.read(b, 0, b.length, pos);
      if (!isZero(b)) return 'data';
    }
    return 'zero';
  } finally {
    await fh.close();
  }
}

async function deviceSize(fh: Awaited<ReturnType<typeof open>>): Promise<number> {
  const st = await fh.stat();
  if (st.isFile()) return st.size;
  // block device: binary search the readable length (a handful of 1-byte reads)
  let lo = 0;
  let hi = 1;
  const one = Buffer.alloc(1);
  while ((await fh.read(one, 0, 1, hi)).bytesRead === 1) {
    lo = hi;
    hi *= 2;
    if (hi > 2 ** 50) break;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await fh.read(one, 0, 1, mid)).bytesRead === 1) lo = mid;
    else hi = mid;
  }
  return lo + 1;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += 1) if (b[i] !== 0) return false;
  return true;
}
