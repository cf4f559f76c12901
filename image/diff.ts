/**
 * Compare two images and say where they differ: the partition table, then the
 * first partition whose bytes differ, then inside it the first file that
 * differs (FAT: listed and read with mtools; ext4: extracted with debugfs
 * rdump and walked in sorted order, metadata included). Used by
 * `vigil image reproduce` and `vigil image diff`.
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../hw/os/run.js';
import type { Runner } from './disk.js';
import { fatList, fatRead, mtoolsEnv, mtoolsTarget, readTable } from './disk.js';
import { SECTOR } from './layout.js';
import type { ReadPartition } from './layout.js';
import { walk } from './filesystems.js';

export interface DiffResult {
  readonly identical: boolean;
  /** One line per finding, most specific last. */
  readonly findings: readonly string[];
  readonly summary: string;
}

/** Offset of the first differing byte in [start, start+length) of two files, or undefined. */
export async function firstDifference(
  a: string,
  b: string,
  start = 0,
  length?: number,
): Promise<number | undefined> {
  const [sa, sb] = await Promise.all([stat(a), stat(b)]);
  const end = length === undefined ? Math.max(sa.size, sb.size) : start + length;
  const CHUNK = 4 * 1024 * 1024;
  const readRange = async (file: string, from: number, n: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const c of createReadStream(file, {
      start: from,
      end: from + n - 1,
      highWaterMark: CHUNK,
    }))
      parts.push(c as Buffer);
    const buf = Buffer.concat(parts);
    return buf.length < n ? Buffer.concat([buf, Buffer.alloc(n - buf.length)]) : buf;
  };
  for (let at = start; at < end; at += CHUNK) {
    const n = Math.min(CHUNK, end - at);
    const [x, y] = await Promise.all([readRange(a, at, n), readRange(b, at, n)]);
    if (!x.equals(y)) {
      for (let i = 0; i < n; i++) if (x[i] !== y[i]) return at + i;
    }
  }
  if (sa.size !== sb.size && length === undefined) return Math.min(sa.size, sb.size);
  return undefined;
}

async function fatFirstDiff(
  a: string,
  b: string,
  pa: ReadPartition,
  pb: ReadPartition,
  runner: Runner,
): Promise<string> {
  const ta = mtoolsTarget(a, pa);
  const tb = mtoolsTarget(b, pb);
  const [la, lb] = await Promise.all([fatList(ta, runner), fatList(tb, runner)]);
  const all = [...new Set([...la, ...lb])].sort();
  for (const f of all) {
    if (!la.includes(f)) return `file ${f} only in the second image`;
    if (!lb.includes(f)) return `file ${f} only in the first image`;
    const [x, y] = await Promise.all([fatRead(ta, f, runner), fatRead(tb, f, runner)]);
    if (!x.equals(y)) return `file ${f} differs in content`;
  }
  // same files, same bytes: directory metadata (times, order) differs
  const listing = async (t: string): Promise<string> =>
    (
      await runner('mdir', ['-/', '-a', '-i', t, '::'], {
        env: mtoolsEnv(),
        timeoutMs: 60_000,
        okExitCodes: [0, 1],
      })
    ).stdout.toString('utf8');
  const [da, db] = await Promise.all([listing(ta), listing(tb)]);
  const linesA = da.split('\n');
  const linesB = db.split('\n');
  for (let i = 0; i < Math.max(linesA.length, linesB.length); i++) {
    if (linesA[i] !== linesB[i])
      return `FAT metadata differs: "${linesA[i]?.trim() ?? ''}" vs "${linesB[i]?.trim() ?? ''}"`;
  }
  return 'FAT filesystem structures differ (same files, same listing)';
}

async function extractExt4(
  image: string,
  p: ReadPartition,
  dir: string,
  runner: Runner,
): Promise<string> {
  const fsFile = `${dir}.ext4`;
  await runner(
    'dd',
    [
      `if=${image}`,
      `of=${fsFile}`,
      `bs=${SECTOR}`,
      `skip=${p.start}`,
      `count=${p.size}`,
      'conv=sparse',
      'status=none',
    ],
    {
      timeoutMs: 30 * 60_000,
    },
  );
  await mkdir(dir, { recursive: true });
  await runner('debugfs', ['-R', `rdump / ${dir}`, fsFile], { timeoutMs: 30 * 60_000 });
  return fsFile;
}

async function describe(path: string): Promise<string> {
  const s = await lstat(path);
  const kind = s.isSymbolicLink()
    ? `link->${await readlink(path)}`
    : s.isDirectory()
      ? 'dir'
      : s.isFile()
        ? 'file'
        : 'special';
  // debugfs rdump cannot set a symlink's times (they are the extraction's): a link's own
  // time is left to the block comparison below, which names the inode
  const mtime = s.isSymbolicLink() ? '' : ` mtime ${Math.floor(s.mtimeMs / 1000)}`;
  return `${kind} mode ${(s.mode & 0o7777).toString(8)} uid ${s.uid} gid ${s.gid}${mtime} size ${s.isFile() ? s.size : 0}`;
}

async function ext4FirstDiff(
  a: string,
  b: string,
  pa: ReadPartition,
  pb: ReadPartition,
  work: string,
  runner: Runner,
): Promise<string> {
  const da = join(work, 'a');
  const db = join(work, 'b');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const fa = await extractExt4(a, pa, da, runner);
  const fb = await extractExt4(b, pb, db, runner);
  try {
    const [wa, wb] = await Promise.all([walk(da), walk(db)]);
    const setB = new Set(wb);
    const setA = new Set(wa);
    const all = [...new Set([...wa, ...wb])].sort();
    for (const p of all) {
      if (!setB.has(p)) return `file ${p} only in the first image`;
      if (!setA.has(p)) return `file ${p} only in the second image`;
      const [ma, mb] = await Promise.all([describe(join(da, p)), describe(join(db, p))]);
      if (ma !== mb) return `file ${p} differs: ${ma} vs ${mb}`;
      if (ma.startsWith('file')) {
        const [x, y] = await Promise.all([readFile(join(da, p)), readFile(join(db, p))]);
        if (!x.equals(y)) return `file ${p} differs in content`;
      }
    }
    // same tree: find the inode owning the first differing block
    const off = await firstDifference(fa, fb);
    if (off === undefined) return 'ext4 filesystems are identical once extracted';
    const block = Math.floor(off / 4096);
    const icheck = (
      await runner('debugfs', ['-R', `icheck ${block}`, fa], { timeoutMs: 60_000 })
    ).stdout.toString('utf8');
    const inode = /^\s*\d+\s+(\d+)/m.exec(icheck.split('\n').slice(1).join('\n'))?.[1];
    if (inode !== undefined) {
      const nc = (
        await runner('debugfs', ['-R', `ncheck ${inode}`, fa], { timeoutMs: 60_000 })
      ).stdout.toString('utf8');
      const path = nc.split('\n')[1]?.split('\t')[1];
      return `ext4 block ${block} (inode ${inode}${path ? `, ${path}` : ''}) differs: same files, different layout or metadata`;
    }
    return `ext4 metadata differs at byte ${off} (block ${block}: inode table, bitmaps or superblock)`;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function diffImages(
  a: string,
  b: string,
  work: string,
  runner: Runner = run,
): Promise<DiffResult> {
  const findings: string[] = [];
  const done = (identical: boolean): DiffResult => ({
    identical,
    findings,
    summary: identical ? `identical: ${a} and ${b}` : `DIFFERENT: ${findings.join('; ')}`,
  });
  const first = await firstDifference(a, b);
  if (first === undefined) return done(true);
  findings.push(`first differing byte at offset ${first}`);
  const [ta, tb] = await Promise.all([readTable(a, runner), readTable(b, runner)]);
  if (
    JSON.stringify(ta.partitions.map((p) => [p.number, p.start, p.size, p.type])) !==
      JSON.stringify(tb.partitions.map((p) => [p.number, p.start, p.size, p.type])) ||
    ta.diskId !== tb.diskId
  ) {
    findings.push('partition tables differ');
    return done(false);
  }
  const sector = Math.floor(first / SECTOR);
  const part = ta.partitions.find(
    (p) => p.type !== '5' && sector >= p.start && sector < p.start + p.size,
  );
  if (!part) {
    findings.push(`outside every partition (sector ${sector}: MBR/EBR or gap)`);
    return done(false);
  }
  const pb = tb.partitions.find((p) => p.number === part.number) ?? part;
  findings.push(`partition ${part.number}`);
  if (part.type === 'c') findings.push(await fatFirstDiff(a, b, part, pb, runner));
  else findings.push(await ext4FirstDiff(a, b, part, pb, join(work, `p${part.number}`), runner));
  return done(false);
}
