/**
 * Filesystem images built from directories without mounting anything, with
 * every timestamp, UUID and seed fixed so two builds are byte-identical:
 * FAT with mkfs.vfat --invariant + mcopy (SOURCE_DATE_EPOCH), ext4 with
 * mkfs.ext4 -d (E2FSPROGS_FAKE_TIME) followed by a debugfs pass that sets the
 * inode change/access times mke2fs copied from the host.
 */
import { lstat, lutimes, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../hw/os/run.js';
import { VigilError } from '../base/errors.js';
import type { Runner } from './disk.js';
import { mtoolsEnv } from './disk.js';
import { MIB_SECTORS, SECTOR } from './layout.js';
import type { Layout } from './layout.js';

export class FilesystemError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EFILESYSTEM', message, options);
    this.name = 'FilesystemError';
  }
}

/** Fixed identities of the root filesystem (reproducibility). */
export const ROOT_FS_UUID = '5649474c-0000-4000-8000-000000000005';
export const ROOT_HASH_SEED = '5649474c-0000-4000-8000-0000000000a5';

/** Every path under `dir` (relative, "/"-rooted), parents before children, sorted. */
export async function walk(dir: string): Promise<string[]> {
  const out: string[] = ['/'];
  const visit = async (rel: string): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    for (const n of names) {
      const r = rel === '/' ? `/${n}` : `${rel}/${n}`;
      out.push(r);
      const st = await lstat(join(dir, r));
      if (st.isDirectory()) await visit(r);
    }
  };
  await visit('/');
  return out;
}

/** Set atime to the epoch and clamp mtime to it, for every file under dir (symlinks themselves). */
export async function clampTimes(dir: string, epoch: number): Promise<number> {
  const paths = await walk(dir);
  // children first, so setting a file's time does not disturb its directory afterwards
  for (const p of [...paths].reverse()) {
    const full = join(dir, p);
    const st = await lstat(full);
    const mtime = Math.min(Math.floor(st.mtimeMs / 1000), epoch);
    await lutimes(full, epoch, mtime);
  }
  return paths.length;
}

/** debugfs commands giving every inode fixed change and access times (mke2fs copies the host's). */
export function debugfsTimeScript(paths: readonly string[], epoch: number): string {
  const lines: string[] = [];
  for (const p of paths) {
    if (/["\n]/.test(p))
      throw new FilesystemError(
        `cannot normalise a path containing quotes or newlines: ${JSON.stringify(p)}`,
      );
    // atime too: mke2fs reading a directory on the host updates its atime (relatime)
    lines.push(`sif "${p}" ctime @${epoch}`, `sif "${p}" atime @${epoch}`);
  }
  return lines.join('\n') + '\n';
}

export interface Ext4Options {
  readonly sourceDir: string;
  readonly output: string;
  readonly sizeMiB: number;
  readonly label: string;
  readonly epoch: number;
  readonly uuid?: string;
  readonly hashSeed?: string;
  readonly runner?: Runner;
}

export async function makeExt4(o: Ext4Options): Promise<void> {
  const runner = o.runner ?? run;
  const env = {
    ...process.env,
    E2FSPROGS_FAKE_TIME: String(o.epoch),
    SOURCE_DATE_EPOCH: String(o.epoch),
  };
  await rm(o.output, { force: true });
  await clampTimes(o.sourceDir, o.epoch);
  const paths = await walk(o.sourceDir);
  try {
    await runner(
      'mkfs.ext4',
      [
        '-q',
        '-F',
        '-L',
        o.label,
        '-U',
        o.uuid ?? ROOT_FS_UUID,
        '-E',
        `hash_seed=${o.hashSeed ?? ROOT_HASH_SEED},root_owner=0:0`,
        '-d',
        o.sourceDir,
        o.output,
        `${o.sizeMiB}M`,
      ],
      { env, timeoutMs: 30 * 60_000 },
    );
  } catch (e) {
    throw new FilesystemError(
      `mkfs.ext4 -d ${o.sourceDir} failed (is the ${o.sizeMiB} MiB root partition big enough?)`,
      {
        cause: e,
      },
    );
  }
  const script = `${o.output}.debugfs`;
  await writeFile(script, debugfsTimeScript(paths, o.epoch));
  try {
    const r = await runner('debugfs', ['-w', '-f', script, o.output], {
      env,
      timeoutMs: 30 * 60_000,
    });
    const bad = r.stderr.split('\n').find((l) => /not found|error|invalid/i.test(l));
    if (bad !== undefined) throw new FilesystemError(`debugfs could not normalise times: ${bad}`);
  } finally {
    await rm(script, { force: true });
  }
  // the filesystem must be clean for the kernel and for reproducibility checks
  await runner('e2fsck', ['-fn', o.output], { env, timeoutMs: 10 * 60_000 });
}

export interface FatOptions {
  readonly output: string;
  readonly sizeMiB: number;
  readonly label: string;
  readonly epoch: number;
  /** Directory whose contents go into the root of the filesystem; omitted = empty. */
  readonly sourceDir?: string;
  readonly fatBits?: 16 | 32;
  readonly runner?: Runner;
}

export async function makeFat(o: FatOptions): Promise<void> {
  const runner = o.runner ?? run;
  await rm(o.output, { force: true });
  const bits = o.fatBits ?? (o.sizeMiB >= 64 ? 32 : 16);
  await runner(
    'mkfs.vfat',
    ['-C', '-F', String(bits), '-n', o.label, '--invariant', o.output, String(o.sizeMiB * 1024)],
    { timeoutMs: 5 * 60_000, env: { ...process.env, SOURCE_DATE_EPOCH: String(o.epoch) } },
  );
  if (o.sourceDir === undefined) return;
  await clampTimes(o.sourceDir, o.epoch);
  const names = (await readdir(o.sourceDir)).sort();
  for (const n of names) {
    await runner('mcopy', ['-s', '-p', '-m', '-Q', '-i', o.output, join(o.sourceDir, n), '::'], {
      env: mtoolsEnv(o.epoch),
      timeoutMs: 10 * 60_000,
    });
  }
}

/** Create the image file: sparse, partitioned, each filesystem written at its offset. */
export async function assembleImage(
  image: string,
  layout: Layout,
  sfdisk: string,
  parts: readonly { readonly number: number; readonly file: string }[],
  runner: Runner = run,
): Promise<void> {
  await rm(image, { force: true });
  await runner('truncate', ['-s', `${layout.totalMiB}M`, image], { timeoutMs: 60_000 });
  await runner('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', image], {
    stdin: sfdisk,
    timeoutMs: 60_000,
  });
  for (const part of parts) {
    const p = layout.partitions.find((x) => x.number === part.number);
    if (!p) throw new FilesystemError(`no partition ${part.number} in the layout`);
    const st = await lstat(part.file);
    if (st.size > p.sizeMiB * MIB_SECTORS * SECTOR) {
      throw new FilesystemError(
        `${part.file} (${st.size} bytes) does not fit partition ${p.number} (${p.sizeMiB} MiB)`,
      );
    }
    await runner(
      'dd',
      [
        `if=${part.file}`,
        `of=${image}`,
        'bs=1M',
        `seek=${p.startMiB}`,
        'conv=notrunc,sparse',
        'status=none',
      ],
      { timeoutMs: 30 * 60_000 },
    );
  }
}
