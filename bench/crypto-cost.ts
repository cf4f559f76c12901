/**
 * Crypto CPU per video-minute through the real paths, beside the bare cipher
 * (issue #19, items 1 and 3).
 *
 * Video: one minute of 1080p30 at 4 Mbit/s = 60 one-second GOPs of 500,000
 * bytes, as RANDOM bytes of that size (the cipher does not care what it
 * encrypts; no encoder runs). One item per minute, one write per GOP, 64 KiB
 * records; each GOP's records are appended to a file as they are sealed, as
 * parts in one vectored write (writevSync; the sealer's `appendParts` path);
 * the open side reads back each appended piece (readSync) and feeds it on.
 *
 *  - seal: `MlsItemSealer` on a hub paired with one phone (epoch advance with
 *    commit + fsynced persist, header, 60 writes, end record);
 *  - open: the phone's streaming reader (`phone.openItem({ keepPlaintext: false })`:
 *    commit processing, key persist, records opened and each chunk consumed, the
 *    item not assembled: like the bare loop, which drops each record's plaintext, and
 *    like the companion, whose sync, viewer and CLI stream an item's chunks and never
 *    join them — app/crypto.ts `streamItem`, `openStoredItem`);
 *  - bare: a node:crypto ChaCha20-Poly1305 loop over the same GOPs with the
 *    same record size and the same writes/reads (ciphertext and tag as parts,
 *    one writev per GOP; opened in place), no framing, no MLS.
 * The paths run interleaved in one process, ≥ 5 rounds; the bare loop and the native
 * path back to back in alternating order (the machine's speed drifts within seconds on
 * this VM), the JS path after them. CPU is CPU time, not wall-clock, so load on a shared
 * machine matters less. Settled (the default since session 12; VIGIL_BENCH_SETTLE=0 for
 * the old way, process.cpuUsage over each run): each run starts with V8's background
 * threads idle and is billed its process CPU plus the background work it left running
 * until they are idle again, so a scavenge helper's or buffer sweeper's work for earlier
 * runs' garbage no longer lands in the next measurement. Printed beside the figures: the
 * split (main thread / libuv pool / V8 background), main-thread GC events, minor faults,
 * and a speed probe (a fixed SHA-256 job before each seal and open group).
 * VIGIL_BENCH_DETAIL=1 prints every round; VIGIL_BENCH_PROVIDERS=native leaves the JS
 * provider out.
 *
 * Also, per crypto provider (native = node:crypto, js = ts-mls default):
 * the fixed cost per motion event (a clip and its thumbnail: two items, two
 * epoch advances, hub and phone), the epoch advance p50/p90 (commit + the
 * persisted writes, 1 phone, wall-clock), and the first item after a restart
 * (a fresh `node --import tsx` process: import, profile load, hub open, first
 * item; tsx transpiles our TypeScript on the fly, which a built image does not).
 *
 * Run: npx tsx bench/crypto-cost.ts [rounds=5] [advances=20] [events=6] [restarts=2]
 * VIGIL_BENCH_NODE=hub runs the whole bench (and its restarts) in a node with the hub unit's
 * V8 flags (HUB_NODE_FLAGS, firmware/supervisor/malloc.ts): the seal and epoch-advance
 * figures of the hub's JS as it ships; the companion (the open side) runs plain node. The
 * unit's malloc tunables are left out: they make each 64 KiB record a fresh mapping on the
 * bare side and Vigil's alike, a cost common to both that would only dilute the ratio.
 */
import { createCipheriv, createDecipheriv, createHash, pbkdf2, randomBytes } from 'node:crypto';
import {
  closeSync,
  openSync,
  readFileSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { join } from 'node:path';
import type { CiphertextSink } from '../firmware/items.js';
import type { MlsHub } from '../firmware/mls/hub.js';
import type { MlsItemSealer } from '../firmware/mls/sealer.js';
import type { E2eePhone } from '../app/e2ee/phone.js';
import type { ItemKind } from '../protocol/items.js';
import { loadMlsProfile, type MlsCrypto } from '../protocol/mls-profile.js';
import { run, spawnProcess } from '../hw/os/run.js';
import { HUB_NODE_FLAGS } from '../firmware/supervisor/malloc.js';
import {
  DEVICE_ID,
  hubLeafKey,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../dev/fixtures/paired-hub.js';

const nodeMode = process.env.VIGIL_BENCH_NODE ?? 'plain';
if (!['plain', 'hub', 'hub-child'].includes(nodeMode))
  throw new Error(`VIGIL_BENCH_NODE must be plain or hub, got "${nodeMode}"`);
if (nodeMode === 'hub') {
  const r = await spawnProcess(
    process.execPath,
    [...HUB_NODE_FLAGS, '--import', 'tsx', import.meta.filename, ...process.argv.slice(2)],
    {
      stdout: 'inherit',
      stderr: 'inherit',
      env: { ...process.env, VIGIL_BENCH_NODE: 'hub-child' },
    },
  ).exited;
  process.exit(r.exitCode ?? 1);
}
/** The node flags this run's processes start with (the hub's, or none). */
const NODE_FLAGS: readonly string[] = nodeMode === 'hub-child' ? HUB_NODE_FLAGS : [];

const ROUNDS = Math.max(5, Number(process.argv[2] ?? 5));
const ADVANCES = Number(process.argv[3] ?? 20);
const EVENTS = Number(process.argv[4] ?? 6);
const RESTARTS = Number(process.argv[5] ?? 2);

const GOP_BYTES = 500_000; // 4 Mbit/s, one GOP per second
const GOPS_PER_MINUTE = 60;
const RECORD = 64 * 1024;
const TAG = 16;
// VIGIL_BENCH_PROVIDERS=native leaves the JS provider out (its rig shares the container and MLS code)
const PROVIDERS: readonly MlsCrypto[] =
  process.env.VIGIL_BENCH_PROVIDERS === 'native' ? ['native'] : ['native', 'js'];

// ---- small helpers -------------------------------------------------------------------

/**
 * Every thread's CPU time, ms, by thread id: the scheduler's run time from /proc (Linux
 * only). Exact for a thread that is not running when read; a running thread's (the
 * reader's own) lags by up to a scheduler tick, so the main thread's share is taken as the
 * process's precise total (process.cpuUsage) minus the other threads'.
 */
function threadTimes(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const t of readdirSync('/proc/self/task'))
      try {
        out.set(
          t,
          Number(readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e6,
        );
      } catch {
        /* the thread ended */
      }
  } catch {
    /* not Linux */
  }
  return out;
}
/** The libuv pool's threads (found by giving it work: pbkdf2 runs there), filled in at setup. */
const poolThreads = new Set<string>();
async function findPoolThreads(): Promise<void> {
  const before = threadTimes();
  await Promise.all(
    Array.from(
      { length: 8 },
      () =>
        new Promise<void>((res, rej) => {
          pbkdf2('x', 'y', 200_000, 32, 'sha256', (e) => {
            if (e === null) res();
            else rej(e);
          });
        }),
    ),
  );
  for (const [t, ms] of threadTimes()) if (ms - (before.get(t) ?? 0) > 20) poolThreads.add(t);
  poolThreads.delete(String(process.pid));
}
/**
 * The machine's speed now: main-thread CPU-ms of a fixed job (SHA-256 of 16 MiB, no allocation,
 * no I/O). Printed beside the rounds (VIGIL_BENCH_DETAIL=1) so drift is visible.
 */
const probeData = Buffer.alloc(16 << 20, 7);
function probe(): number {
  const u0 = process.cpuUsage();
  createHash('sha256').update(probeData).digest();
  const u = process.cpuUsage(u0);
  return (u.user + u.system) / 1000;
}
/** All threads but the main one and the libuv pool's: V8's (GC helpers, compilers) and any other. */
function backgroundMs(times = threadTimes()): number {
  let n = 0;
  for (const [t, ms] of times) if (t !== String(process.pid) && !poolThreads.has(t)) n += ms;
  return n;
}
const sleep = (ms: number): Promise<void> =>
  new Promise((res) => {
    setTimeout(res, ms);
  });
/** Wait until V8's background threads are idle: under 0.05 CPU-ms in 5 ms, twice running. */
async function drain(): Promise<void> {
  let last = backgroundMs();
  for (let quiet = 0, i = 0; quiet < 2 && i < 400; i++) {
    await sleep(5);
    const b = backgroundMs();
    quiet = b - last < 0.05 ? quiet + 1 : 0;
    last = b;
  }
}
/**
 * Settled measurements (the default; VIGIL_BENCH_SETTLE=0 measures as before): each path
 * starts with V8's background threads idle (a concurrent marking or sweeping that earlier
 * paths started has finished: waited for, not forced, so the heap and malloc stay warm),
 * and is billed for what it ran and started: its main thread and the libuv pool during the
 * run, plus V8's background threads from its start until they are idle again (a GC cycle
 * its own allocation triggered finishes after it returns). Without this, a concurrent GC
 * cycle that earlier paths' garbage started lands in whichever measurement runs beside it,
 * and slows its main thread too (session 12).
 */
const SETTLE = process.env.VIGIL_BENCH_SETTLE !== '0';
/** One measurement: process CPU (user + system), its split, the main thread's share, faults. */
interface Sample {
  /** Billed CPU-ms: settled, main + pool + background to idle; else process.cpuUsage over the run. */
  cpu: number;
  /** process.cpuUsage over the run (user + system) */
  raw: number;
  wall: number;
  user: number;
  system: number;
  main: number;
  /** CPU of the libuv pool's threads (async file operations) */
  pool: number;
  /** V8's background threads, from the start until idle again (settled) or over the run */
  bg: number;
  faults: number;
  t0: number;
  t1: number;
}
const samples = new Map<string, Sample[]>();
async function measure(fn: () => Promise<void> | void, key?: string): Promise<Sample> {
  if (SETTLE) await drain();
  const r0 = process.resourceUsage();
  const p0 = threadTimes();
  const u0 = process.cpuUsage();
  const w = performance.now();
  await fn();
  const w1 = performance.now();
  const u = process.cpuUsage(u0);
  const p1 = threadTimes();
  const r1 = process.resourceUsage();
  let pool = 0;
  for (const t of poolThreads) pool += (p1.get(t) ?? 0) - (p0.get(t) ?? 0);
  const bgRun = backgroundMs(p1) - backgroundMs(p0);
  if (SETTLE) await drain();
  const bg = backgroundMs() - backgroundMs(p0);
  const raw = (u.user + u.system) / 1000;
  const s: Sample = {
    // settled: the run's precise process CPU plus V8's background work it left running
    cpu: SETTLE ? raw + (bg - bgRun) : raw,
    raw,
    wall: w1 - w,
    user: u.user / 1000,
    system: u.system / 1000,
    main: raw - pool - bgRun,
    pool,
    bg,
    faults: r1.minorPageFault - r0.minorPageFault,
    t0: w,
    t1: w1,
  };
  if (key !== undefined) samples.set(key, [...(samples.get(key) ?? []), s]);
  return s;
}
function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}
function pct(xs: readonly number[], p: number): number {
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN;
}
const median = (xs: readonly number[]): number => pct(xs, 0.5);
function mmm(xs: readonly number[], digits: number, unit = ''): string {
  const s = sorted(xs);
  const f = (x: number | undefined): string => (x ?? NaN).toFixed(digits);
  return `min ${f(s[0])} / median ${f(median(s))} / max ${f(s[s.length - 1])}${unit}`;
}

/** A sink appending every record to one file, remembering each append's size. */
class FileSink implements CiphertextSink {
  readonly sizes: number[] = [];
  readonly path: string;
  readonly #fd: number;
  constructor(path: string) {
    this.path = path;
    this.#fd = openSync(path, 'w');
  }
  append(_itemId: string, _kind: ItemKind, bytes: Uint8Array): Promise<void> {
    writeSync(this.#fd, bytes);
    this.sizes.push(bytes.length);
    return Promise.resolve();
  }
  /** The sealer's zero-copy path: one vectored write per plaintext write (a GOP). */
  appendParts(
    _itemId: string,
    _kind: ItemKind,
    records: readonly (readonly Uint8Array[])[],
  ): Promise<void> {
    this.sizes.push(writev(this.#fd, records.flat()));
    return Promise.resolve();
  }
  close(): void {
    closeSync(this.#fd);
  }
}

/** writevSync of all parts (in batches of at most 1024: IOV_MAX), returns the bytes written. */
function writev(fd: number, parts: readonly Uint8Array[]): number {
  let n = 0;
  for (let i = 0; i < parts.length; i += 1024) n += writevSync(fd, parts.slice(i, i + 1024));
  return n;
}

/** Read a file back in the pieces it was written in. */
function* readBack(path: string, sizes: readonly number[]): Generator<Buffer> {
  const fd = openSync(path, 'r');
  try {
    let pos = 0;
    for (const n of sizes) {
      const b = Buffer.allocUnsafe(n);
      readSync(fd, b, 0, n, pos);
      pos += n;
      yield b;
    }
  } finally {
    closeSync(fd);
  }
}

// ---- the video minute -------------------------------------------------------------------

const gops = Array.from({ length: GOPS_PER_MINUTE }, () => randomBytes(GOP_BYTES));

const bareKeys = new Map<string, Buffer>();

/**
 * The bare loop at its cheapest: ciphertext and tag of each record written as parts, one writev
 * per GOP, to `fd` (opened and closed outside the measurement, as the sealer's FileSink is).
 */
function bareSeal(path: string, fd: number): number[] {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);
  const sizes: number[] = [];
  let i = 0;
  for (const g of gops) {
    const parts: Buffer[] = [];
    for (let off = 0; off < g.length; off += RECORD) {
      const pt = g.subarray(off, off + RECORD);
      nonce.writeUInt32BE(i++, 8);
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
      parts.push(c.update(pt));
      c.final();
      parts.push(c.getAuthTag());
    }
    sizes.push(writev(fd, parts));
  }
  bareKeys.set(path, key);
  return sizes;
}

/** Read back GOP by GOP (as written) and open each record in place. */
function bareOpen(path: string, sizes: readonly number[]): number {
  const key = bareKeys.get(path) as Buffer;
  const nonce = Buffer.alloc(12);
  let i = 0;
  let n = 0;
  for (const piece of readBack(path, sizes))
    for (let off = 0; off < piece.length; off += RECORD + TAG) {
      const rec = piece.subarray(off, Math.min(piece.length, off + RECORD + TAG));
      nonce.writeUInt32BE(i++, 8);
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
      d.setAuthTag(rec.subarray(rec.length - TAG));
      n += d.update(rec.subarray(0, rec.length - TAG)).length;
      d.final();
    }
  return n;
}

async function hubSeal(sealer: MlsItemSealer): Promise<void> {
  const w = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
  for (const g of gops) await w.write(g);
  await w.close(60_000);
}

/** The phone's streaming open (as sync and a streaming viewer use it): chunks consumed, not joined. */
async function phoneOpen(phone: E2eePhone, path: string, sizes: readonly number[]) {
  const r = phone.openItem({ keepPlaintext: false });
  let n = 0;
  for (const rec of readBack(path, sizes))
    for (const e of await r.push(rec)) if (e.type === 'chunk') n += e.plaintext.length;
  r.end();
  return n;
}

// ---- setup: one hub + phone per provider, both sides on that provider ----------------------

interface Rig {
  readonly crypto: MlsCrypto;
  readonly hubDir: string;
  readonly hub: MlsHub;
  readonly phone: E2eePhone;
}

/** perf_hooks' GC kinds (constants.NODE_PERFORMANCE_GC_*) */
const GC_KIND: Record<number, string> = {
  1: 'minor',
  4: 'major',
  8: 'incremental',
  16: 'weak callbacks',
};
/** Main-thread GC pauses (start, duration), to attribute to the measurements afterwards. */
const gcs: { start: number; duration: number; kind: number }[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    gcs.push({
      start: e.startTime,
      duration: e.duration,
      kind: (e as { detail?: { kind?: number } }).detail?.kind ?? 0,
    });
});
gcObserver.observe({ entryTypes: ['gc'] });

const root = tempDir('vigil-bench-crypto-');
const rigs: Rig[] = [];
try {
  await findPoolThreads();
  for (const crypto of PROVIDERS) {
    const p = await loadMlsProfile({ crypto });
    const hubDir = join(root, `hub-${crypto}`);
    const hub = await openHub(p, hubDir);
    const paired = await pair({
      p,
      hub,
      devicePsk: newDevicePsk(),
      phoneDir: join(root, `phone-${crypto}`),
    });
    if (paired.phone === undefined) throw new Error(`pairing failed (${crypto})`);
    rigs.push({ crypto, hubDir, hub, phone: paired.phone });
  }

  // ---- whole path, interleaved rounds --------------------------------------------------------
  const total = GOP_BYTES * GOPS_PER_MINUTE;
  const cpu = new Map<string, number[]>();
  const add = (k: string, v: number): void => {
    cpu.set(k, [...(cpu.get(k) ?? []), v]);
  };
  type Path = { name: string; seal: () => Promise<void>; open: () => Promise<void> };
  /** Per provider and round: whether that round's epoch advance carried an UpdatePath. */
  const withPath = new Map<MlsCrypto, boolean[]>();
  let bareSizes: number[] = [];
  const paths: Path[] = [
    {
      name: 'bare',
      seal: async () => {
        const f = join(root, 'bare.bin');
        // opening with truncation frees the last round's blocks: outside the measurement for
        // both paths (it used to be inside for the bare loop only)
        const fd = openSync(f, 'w');
        const m = await measure(() => {
          bareSizes = bareSeal(f, fd);
        }, 'bare seal');
        closeSync(fd);
        add('bare seal', m.cpu);
      },
      open: async () => {
        const f = join(root, 'bare.bin');
        const m = await measure(() => {
          if (bareOpen(f, bareSizes) !== total) throw new Error('bare open size');
        }, 'bare open');
        add('bare open', m.cpu);
      },
    },
    ...rigs.map((rig): Path => {
      const f = join(root, `item-${rig.crypto}.bin`);
      let sizes: number[] = [];
      return {
        name: rig.crypto,
        seal: async () => {
          const sink = new FileSink(f);
          const sealer = sealerFor(rig.hub, sink);
          const before = await hubLeafKey(rig.hub, rig.phone.phoneId);
          const m = await measure(() => hubSeal(sealer), `vigil seal (${rig.crypto})`);
          sink.close();
          sizes = sink.sizes;
          add(`vigil seal (${rig.crypto})`, m.cpu);
          withPath.set(rig.crypto, [
            ...(withPath.get(rig.crypto) ?? []),
            !before.equals(await hubLeafKey(rig.hub, rig.phone.phoneId)),
          ]);
        },
        open: async () => {
          const m = await measure(async () => {
            if ((await phoneOpen(rig.phone, f, sizes)) !== total) throw new Error('open size');
          }, `vigil open (${rig.crypto})`);
          add(`vigil open (${rig.crypto})`, m.cpu);
        },
      };
    }),
  ];
  // warm-up (not counted): one pass of each
  for (const pth of paths) {
    await pth.seal();
    await pth.open();
  }
  cpu.clear();
  samples.clear();
  withPath.clear();
  // The bare loop and the native path (the acceptance pair) run back to back, in alternating
  // order (A B, B A, ...): the machine's speed drifts within seconds on this VM (session 12),
  // so a pair measured together is compared under the same conditions; the JS path follows.
  const probes: number[] = [];
  const roundsFrom = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    const [bare, native, ...rest] = paths as [Path, Path, ...Path[]];
    const order = [...(r % 2 === 0 ? [bare, native] : [native, bare]), ...rest];
    probes.push(probe());
    for (const pth of order) await pth.seal();
    probes.push(probe());
    for (const pth of order) await pth.open();
  }

  console.log(
    `# crypto CPU per video-minute: 1080p30 4 Mbit/s = ${GOPS_PER_MINUTE} x ${GOP_BYTES} B GOPs ` +
      `(random bytes), 64 KiB records, one item per minute, ${ROUNDS} interleaved rounds, ` +
      (SETTLE
        ? 'settled (each run starts with V8 background idle; billed main + pool + V8 background until idle)'
        : 'unsettled (process.cpuUsage over each run)') +
      `; node ${NODE_FLAGS.length > 0 ? `with the hub's V8 flags (${NODE_FLAGS.join(' ')})` : 'plain (no flags)'}`,
  );
  const bare = { seal: cpu.get('bare seal') ?? [], open: cpu.get('bare open') ?? [] };
  console.log(
    `bare ChaCha20-Poly1305 seal: ${mmm(
      bare.seal.map((x) => x / 1000),
      3,
      ' CPU-s',
    )}`,
  );
  console.log(
    `bare ChaCha20-Poly1305 open: ${mmm(
      bare.open.map((x) => x / 1000),
      3,
      ' CPU-s',
    )}`,
  );
  for (const rig of rigs)
    for (const dir of ['seal', 'open'] as const) {
      const xs = cpu.get(`vigil ${dir} (${rig.crypto})`) ?? [];
      const ratios = xs.map((x, i) => x / (bare[dir][i] ?? NaN));
      const paths = withPath.get(rig.crypto) ?? [];
      const sum = (ys: readonly number[]): number => ys.reduce((a, b) => a + b, 0);
      console.log(
        `vigil ${dir} (${rig.crypto} crypto): ${mmm(
          xs.map((x) => x / 1000),
          3,
          ' CPU-s',
        )}; ratio to bare ${(median(xs) / median(bare[dir])).toFixed(2)} (per round ${mmm(ratios, 2)}); ` +
          `over all rounds ${(sum(xs) / sum(bare[dir])).toFixed(2)} (${String(paths.filter(Boolean).length)} of ${String(paths.length)} advances with an UpdatePath)`,
      );
    }

  // where each path's CPU goes: user / system, the main thread / other threads (GC helpers,
  // the libuv pool), minor faults, main-thread GC pauses that fell inside the measurement
  const gcIn = (x: Sample): number =>
    gcs.filter((g) => g.start >= x.t0 && g.start < x.t1).reduce((n, g) => n + g.duration, 0);
  console.log(
    `# where it goes (medians, CPU-ms): main thread + libuv pool + V8 background = billed; raw = process.cpuUsage over the run (user / system, tick-split); ` +
      `main-thread GC pauses inside the run; minor faults`,
  );
  for (const [k, xs] of samples) {
    const med = (f: (x: Sample) => number): string => median(xs.map(f)).toFixed(1);
    console.log(
      `${k}: billed ${med((x) => x.cpu)} = main ${med((x) => x.main)} + pool ${med((x) => x.pool)} + background ${med((x) => x.bg)}; raw ${med((x) => x.raw)} (user ${med((x) => x.user)} / system ${med((x) => x.system)}); gc pauses ${med(gcIn)}; faults ${med((x) => x.faults)}`,
    );
  }
  const inRounds = gcs.filter((g) => g.start >= roundsFrom);
  const kinds = new Map<number, number>();
  for (const g of inRounds) kinds.set(g.kind, (kinds.get(g.kind) ?? 0) + 1);
  console.log(
    `main-thread GC events in the rounds: ${[...kinds]
      .sort((a, b) => a[0] - b[0])
      .map(([k, n]) => `${GC_KIND[k] ?? String(k)} ${String(n)}`)
      .join(', ')}`,
  );
  console.log(
    `speed probe (SHA-256 of 16 MiB, main-thread CPU-ms, before each seal and open group): ${mmm(probes, 2)}`,
  );
  if (process.env.VIGIL_BENCH_DETAIL === '1') {
    console.log(`  probes: ${probes.map((x) => x.toFixed(2)).join(' ')}`);
    for (const [k, xs] of samples)
      for (const [i, x] of xs.entries())
        console.log(
          `  ${k} round ${String(i + 1)}: billed ${x.cpu.toFixed(1)} (main ${x.main.toFixed(1)}, pool ${x.pool.toFixed(1)}, background ${x.bg.toFixed(1)}) raw ${x.raw.toFixed(1)} (user ${x.user.toFixed(1)}, system ${x.system.toFixed(1)}) wall ${x.wall.toFixed(1)} gc ${gcIn(x).toFixed(1)} faults ${String(x.faults)}`,
        );
  }

  // ---- per event (clip + thumbnail) and epoch advance, per provider ---------------------------
  console.log('# fixed MLS cost per motion event (clip + thumbnail items, tiny payloads)');
  const small = randomBytes(1000);
  const adv = new Map<MlsCrypto, { wall: number[]; cpu: number[]; path: boolean[] }>();
  /** Per provider and mode: 'shared' = thumbnail in the clip's epoch (now), 'own' = its own epoch (before). */
  const ev = new Map<string, { hub: number[]; phone: number[] }>();
  for (const rig of rigs) adv.set(rig.crypto, { wall: [], cpu: [], path: [] });
  /** One clip and its thumbnail through one sealer; the two items go to two files. */
  const sealEvent = async (rig: Rig, shared: boolean): Promise<FileSink[]> => {
    const files = new Map<string, FileSink>();
    const fileOf = (id: string): FileSink => {
      let f = files.get(id);
      if (f === undefined) {
        f = new FileSink(join(root, `ev-${rig.crypto}-${String(files.size)}.bin`));
        files.set(id, f);
      }
      return f;
    };
    const sink: CiphertextSink = {
      append: (id, kind, bytes) => fileOf(id).append(id, kind, bytes),
      appendParts: (id, kind, parts) => fileOf(id).appendParts(id, kind, parts),
    };
    const sealer = sealerFor(rig.hub, sink);
    const clip = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
    await clip.write(small);
    const thumb = await sealer.begin({
      kind: 'thumbnail',
      startedAt: Date.now(),
      codec: 'image/jpeg',
      ...(shared ? { sameEpochAs: clip.itemId } : {}),
    });
    await thumb.write(small);
    await thumb.close(0);
    await clip.close(1);
    for (const f of files.values()) f.close();
    return [...files.values()];
  };
  for (let i = 0; i < EVENTS; i++)
    for (const rig of i % 2 === 0 ? rigs : [...rigs].reverse())
      for (const shared of i % 2 === 0 ? [true, false] : [false, true]) {
        let files: FileSink[] = [];
        const h = await measure(async () => {
          files = await sealEvent(rig, shared);
        });
        const ph = await measure(async () => {
          for (const f of files) await phoneOpen(rig.phone, f.path, f.sizes);
        });
        const k = `${rig.crypto} ${shared ? 'shared' : 'own'}`;
        const e = ev.get(k) ?? { hub: [], phone: [] };
        e.hub.push(h.cpu);
        e.phone.push(ph.cpu);
        ev.set(k, e);
      }
  for (const rig of rigs)
    for (const shared of [true, false]) {
      const e = ev.get(`${rig.crypto} ${shared ? 'shared' : 'own'}`);
      if (e === undefined) continue;
      console.log(
        `per event, ${rig.crypto} crypto, ${shared ? 'thumbnail in the clip epoch (1 advance)' : 'thumbnail in its own epoch (2 advances)'}: hub ${mmm(e.hub, 1, ' CPU-ms')}; phone ${mmm(e.phone, 1, ' CPU-ms')} (n=${EVENTS})`,
      );
    }

  console.log('# epoch advance: commit + persisted writes (sealer.begin), 1 phone');
  for (let i = 0; i < ADVANCES; i++)
    for (const rig of i % 2 === 0 ? rigs : [...rigs].reverse()) {
      const sink = new FileSink(join(root, `adv-${rig.crypto}.bin`));
      const sealer = sealerFor(rig.hub, sink);
      let w: Awaited<ReturnType<MlsItemSealer['begin']>> | undefined;
      const before = await hubLeafKey(rig.hub, rig.phone.phoneId);
      const m = await measure(async () => {
        w = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
      });
      await w?.close(1);
      sink.close();
      await phoneOpen(rig.phone, sink.path, sink.sizes); // keeps the journal short, not timed
      adv.get(rig.crypto)?.wall.push(m.wall);
      adv.get(rig.crypto)?.cpu.push(m.cpu);
      adv.get(rig.crypto)?.path.push(!before.equals(await hubLeafKey(rig.hub, rig.phone.phoneId)));
    }
  for (const rig of rigs) {
    const a = adv.get(rig.crypto);
    if (a === undefined) continue;
    console.log(
      `epoch advance, ${rig.crypto} crypto: p50 ${pct(a.wall, 0.5).toFixed(1)} ms, p90 ${pct(a.wall, 0.9).toFixed(1)} ms wall; CPU median ${median(a.cpu).toFixed(1)} ms (n=${ADVANCES})`,
    );
    for (const withP of [true, false]) {
      const at = a.path.flatMap((x, i) => (x === withP ? [i] : []));
      const pick = (xs: readonly number[]): number[] => at.map((i) => xs[i] ?? NaN);
      if (at.length > 0)
        console.log(
          `  ${withP ? 'with an UpdatePath' : 'pathless'}: p50 ${pct(pick(a.wall), 0.5).toFixed(1)} ms, p90 ${pct(pick(a.wall), 0.9).toFixed(1)} ms wall; CPU median ${median(pick(a.cpu)).toFixed(1)} ms (n=${String(at.length)})`,
        );
    }
  }

  // ---- first item after a restart (fresh process on the persisted hub) -----------------------
  console.log('# first item after a restart: fresh node --import tsx process on the hub state');
  const child = join(import.meta.dirname, 'crypto-cost-restart.ts');
  for (let i = 0; i < RESTARTS; i++)
    for (const rig of rigs) {
      const res = await run(
        process.execPath,
        [
          ...NODE_FLAGS,
          '--import',
          'tsx',
          child,
          rig.hubDir,
          DEVICE_ID,
          rig.crypto,
          String(GOP_BYTES),
        ],
        { timeoutMs: 60_000 },
      );
      console.log(`restart, ${rig.crypto} crypto: ${res.stdout.toString().trim()}`);
    }
} finally {
  rmSync(root, { recursive: true, force: true });
}
