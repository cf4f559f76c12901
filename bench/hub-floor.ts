/**
 * The hub process's resident memory once its recording path is loaded (modules,
 * zod schemas, the MLS profile), before any video: with glibc's defaults for V8
 * and with the hub's node flags (HUB_NODE_FLAGS, as the systemd unit passes them),
 * alternating, in fresh plain-node processes (the child is bundled with esbuild
 * like bench/media-recording.ts's hub, packages external). Also what loading
 * undici (the platform fetch, first used by the uplink's first request) adds.
 *
 *   npx tsx bench/hub-floor.ts [runs=4]
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../hw/os/run.js';
import { HUB_GLIBC_TUNABLES, HUB_NODE_FLAGS } from '../firmware/supervisor/malloc.js';
import { MiB } from './media-common.js';

const runs = Math.max(1, Number(process.argv[2] ?? 4));
const cacheDir = join(process.cwd(), 'node_modules', '.cache', 'vigil-bench');
await mkdir(cacheDir, { recursive: true });
const childJs = join(cacheDir, 'hub-floor-child.mjs');
await run(
  join(process.cwd(), 'node_modules', 'esbuild', 'bin', 'esbuild'),
  [
    'bench/hub-floor-child.ts',
    '--bundle',
    '--platform=node',
    '--format=esm',
    '--packages=external',
    `--outfile=${childJs}`,
    '--log-level=warning',
  ],
  { timeoutMs: 120_000 },
);

interface Sample {
  readonly stage: string;
  readonly rss: number;
  readonly anon: number;
  readonly file: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
}
const configs = [
  { name: 'V8 defaults', flags: [] as readonly string[] },
  { name: HUB_NODE_FLAGS.join(' '), flags: HUB_NODE_FLAGS },
];
const got = new Map<string, Sample[]>();
for (let i = 0; i < runs; i++)
  for (const c of i % 2 === 0 ? configs : [...configs].reverse()) {
    const r = await run(process.execPath, ['--expose-gc', ...c.flags, childJs, 'undici'], {
      timeoutMs: 120_000,
      env: { ...process.env, GLIBC_TUNABLES: HUB_GLIBC_TUNABLES },
    });
    for (const line of r.stdout.toString('utf8').trim().split('\n')) {
      const s = JSON.parse(line) as Sample;
      const k = `${c.name} | ${s.stage}`;
      got.set(k, [...(got.get(k) ?? []), s]);
    }
  }

const med = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const f = (xs: readonly Sample[], k: keyof Omit<Sample, 'stage'>): string =>
  (med(xs.map((s) => s[k])) / MiB).toFixed(1);
console.log(
  `hub-floor: ${runs} fresh processes per configuration, after 2 GCs (medians, MiB); malloc: the hub's GLIBC_TUNABLES`,
);
for (const [k, xs] of got)
  console.log(
    `  ${k.padEnd(58)} RSS ${f(xs, 'rss')} (anon ${f(xs, 'anon')}, file ${f(xs, 'file')}); V8 heap total ${f(xs, 'heapTotal')}, used ${f(xs, 'heapUsed')}`,
  );
