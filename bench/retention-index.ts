/**
 * The retention index's cost per change, A/B between two checkouts in one process
 * (firmware/storage/retention.ts): the other checkout's RetentionStore (e.g. main's
 * whole-file index) against this one's, each with its own DurableFs, on real files.
 *
 * For each size N (existing items), each checkout starts from the same v1 index of N
 * items (and their files), loads it, makes one warm-up change (this checkout's first
 * change writes the snapshot and starts the log), then runs motion events: add a clip,
 * add its thumbnail, mark both delivered, discard the two oldest items (so N stays put).
 * Printed per operation: wall ms (median, p99, max), CPU ms (mean) and bytes written
 * (mean, from /proc/self/io wchar: every byte this process passed to write()). This
 * checkout runs ~3N changes, so where its snapshot is above the compaction bound (64 KiB:
 * N >= ~500) its means include at least two compactions (amortized) and its max shows one; the other checkout's cost does not
 * depend on history beyond N, so it runs fewer events.
 *
 * Run: npx tsx bench/retention-index.ts <other checkout> [sizes=100,1000,10000]
 *   (the other checkout needs node_modules; e.g. a `git worktree` with a node_modules symlink)
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../hw/os/run.js';
import { cpuMs } from './checkout-ab.js';
import type * as Retention from '../firmware/storage/retention.js';
import type * as Fs from '../hw/os/fs.js';
import type * as Log from '../base/logger.js';

const other = process.argv[2];
if (other === undefined)
  throw new Error('usage: bench/retention-index.ts <other checkout> [sizes]');
const SIZES = (process.argv[3] ?? '100,1000,10000').split(',').map(Number);
const NOW = 1_800_000_000_000;
const OPS = ['add', 'markDelivered', 'discard'] as const;
type Op = (typeof OPS)[number];

interface Store {
  load(): Promise<void>;
  add(it: Retention.RetainedItem): Promise<void>;
  markDelivered(id: string): Promise<boolean>;
  discard(id: string): Promise<boolean>;
  items(): Retention.RetainedItem[];
}

async function checkout(dir: string): Promise<(root: string) => Store> {
  const r = (await import(join(dir, 'firmware/storage/retention.ts'))) as typeof Retention;
  const f = (await import(join(dir, 'hw/os/fs.ts'))) as typeof Fs;
  const l = (await import(join(dir, 'base/logger.ts'))) as typeof Log;
  return (root) =>
    new r.RetentionStore({
      root,
      fs: new f.DurableFs(),
      logger: l.SILENT,
      now: () => NOW,
      stats: async () => ({ totalBytes: 1e12, freeBytes: 1e12 }),
    });
}

const wchar = async (): Promise<number> => {
  const m = /^wchar: (\d+)$/m.exec(await readFile('/proc/self/io', 'utf8'));
  return Number(m?.[1] ?? NaN);
};

const item = (n: number, cls: 'clips' | 'thumbnails'): Retention.RetainedItem => {
  const id = n.toString(16).padStart(32, '0') + (cls === 'clips' ? '' : 't');
  return {
    id,
    cls,
    path: `${cls}/${id}.vgi`,
    bytes: 2_000_000,
    createdAt: NOW + n,
    delivered: true,
  };
};

/** A tree of N items (half clips, half thumbnails, delivered) and its v1 index. */
async function seed(root: string, n: number): Promise<Retention.RetainedItem[]> {
  await mkdir(join(root, 'clips'), { recursive: true });
  await mkdir(join(root, 'thumbnails'), { recursive: true });
  const items = Array.from({ length: n }, (_, i) => item(i, i % 2 === 0 ? 'clips' : 'thumbnails'));
  for (const it of items) await writeFile(join(root, it.path), '');
  await writeFile(
    join(root, '.retention-index.json'),
    JSON.stringify({ format: 'vigil-retention-index', version: 1, items }) + '\n',
  );
  return items;
}

interface Sample {
  wall: number;
  cpu: number;
  bytes: number;
}

async function measure(make: (root: string) => Store, n: number, events: number) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-retention-bench-'));
  try {
    const seeded = await seed(root, n);
    const s = make(root);
    await s.load();
    if (s.items().length !== n) throw new Error(`loaded ${s.items().length} of ${n}`);
    let next = n;
    /** Ids oldest first: what the discards take. */
    const fifo = seeded.map((it) => it.id);
    const one = async (op: Op, f: () => Promise<unknown>, out: Record<Op, Sample[]>) => {
      const w0 = await wchar();
      const c0 = cpuMs();
      const t0 = performance.now();
      await f();
      const t1 = performance.now();
      const c1 = cpuMs();
      out[op].push({ wall: t1 - t0, cpu: c1 - c0, bytes: (await wchar()) - w0 });
    };
    const event = async (out: Record<Op, Sample[]>) => {
      const clip = { ...item(next++, 'clips'), delivered: false };
      const thumb = { ...item(next++, 'thumbnails'), delivered: false };
      // The pipeline writes an item's file before recording it (not timed).
      await writeFile(join(root, clip.path), '');
      await writeFile(join(root, thumb.path), '');
      await one('add', () => s.add(clip), out);
      await one('add', () => s.add(thumb), out);
      fifo.push(clip.id, thumb.id);
      await one('markDelivered', () => s.markDelivered(clip.id), out);
      await one('markDelivered', () => s.markDelivered(thumb.id), out);
      for (let k = 0; k < 2; k++) {
        const gone = fifo.shift() ?? '';
        await one('discard', () => s.discard(gone), out);
      }
    };
    const warm: Record<Op, Sample[]> = { add: [], markDelivered: [], discard: [] };
    await event(warm);
    const out: Record<Op, Sample[]> = { add: [], markDelivered: [], discard: [] };
    for (let e = 0; e < events; e++) await event(out);
    if (s.items().length !== n) throw new Error(`ended with ${s.items().length} of ${n}`);
    const reopened = make(root);
    await reopened.load();
    if (reopened.items().length !== n) throw new Error(`reopened ${reopened.items().length}`);
    return out;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

const rev = async (dir: string): Promise<string> => {
  try {
    return (await run('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'])).stdout.toString().trim();
  } catch {
    return '?';
  }
};
const impls = {
  other: { make: await checkout(resolve(other)), rev: await rev(resolve(other)) },
  this: { make: await checkout(resolve('.')), rev: await rev(resolve('.')) },
};
console.log(
  `retention index, per operation; other=${resolve(other)} (${impls.other.rev}), this=${resolve('.')} (${impls.this.rev})`,
);
console.log(
  `tmpdir ${tmpdir()}; load at start ${(await readFile('/proc/loadavg', 'utf8')).trim()}`,
);
console.log(
  'N       checkout op             count  wall-med  wall-p99  wall-max  cpu-mean  bytes-mean',
);
for (const n of SIZES) {
  // This checkout: >= 2 compactions (the log reaches the snapshot's size every ~N changes).
  const plan = {
    other: Math.max(20, Math.min(100, Math.ceil(20_000 / n))),
    this: Math.max(60, Math.ceil(n / 2)),
  };
  for (const name of ['other', 'this'] as const) {
    const out = await measure(impls[name].make, n, plan[name]);
    for (const op of OPS) {
      const xs = out[op];
      console.log(
        [
          String(n).padEnd(7),
          name.padEnd(8),
          op.padEnd(14),
          String(xs.length).padStart(5),
          q(
            xs.map((x) => x.wall),
            0.5,
          )
            .toFixed(3)
            .padStart(9),
          q(
            xs.map((x) => x.wall),
            0.99,
          )
            .toFixed(3)
            .padStart(9),
          Math.max(...xs.map((x) => x.wall))
            .toFixed(3)
            .padStart(9),
          mean(xs.map((x) => x.cpu))
            .toFixed(3)
            .padStart(9),
          mean(xs.map((x) => x.bytes))
            .toFixed(0)
            .padStart(11),
        ].join(' '),
      );
    }
  }
}
console.log(`load at end ${(await readFile('/proc/loadavg', 'utf8')).trim()}`);
