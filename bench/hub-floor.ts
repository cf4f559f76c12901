/**
 * The hub process's resident memory once its recording path is loaded (modules,
 * zod schemas, the MLS profile), before any video: with glibc's defaults for V8
 * and with the hub's node flags (HUB_NODE_FLAGS, as the systemd unit passes them),
 * alternating, in fresh plain-node processes. The child is bundled with esbuild twice:
 * packages external (the harness before #19's seventh pass) and as the hub ships
 * (image/app-bundle.ts: packages and ts-mls bundled in, zod's translations out). Then what one request to a loopback relay adds:
 * through base/http.ts (the hub's client), or through the platform fetch (undici).
 *
 *   npx tsx bench/hub-floor.ts [runs=4]
 */
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { build } from 'esbuild';
import { run } from '../hw/os/run.js';
import { HUB_BUNDLE_OPTIONS } from '../image/app-bundle.js';
import { HUB_GLIBC_TUNABLES, HUB_NODE_FLAGS } from '../firmware/supervisor/malloc.js';
import { MiB } from './media-common.js';

const runs = Math.max(1, Number(process.argv[2] ?? 4));
const cacheDir = join(process.cwd(), 'node_modules', '.cache', 'vigil-bench');
await mkdir(cacheDir, { recursive: true });
const children = {
  external: 'packages external',
  bundled: 'bundled as shipped (image/app-bundle.ts)',
} as const;
for (const kind of Object.keys(children)) {
  const outfile = join(cacheDir, `hub-floor-${kind}.mjs`);
  const entryPoints = ['bench/hub-floor-child.ts'];
  await build(
    kind === 'external'
      ? {
          ...HUB_BUNDLE_OPTIONS,
          packages: 'external',
          plugins: [],
          external: [],
          entryPoints,
          outfile,
        }
      : { ...HUB_BUNDLE_OPTIONS, entryPoints, outfile },
  );
}

// a stand-in relay in this process: reads the body, answers a small JSON
const relay = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"received":65536}');
  });
});
await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
const relayUrl = `http://127.0.0.1:${String((relay.address() as AddressInfo).port)}/v1/items/x`;

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
  for (const c of i % 2 === 0 ? configs : [...configs].reverse())
    for (const kind of Object.keys(children) as (keyof typeof children)[])
      for (const how of ['http', 'undici']) {
        const r = await run(
          process.execPath,
          ['--expose-gc', ...c.flags, join(cacheDir, `hub-floor-${kind}.mjs`), how, relayUrl],
          {
            timeoutMs: 120_000,
            env: { ...process.env, GLIBC_TUNABLES: HUB_GLIBC_TUNABLES },
          },
        );
        for (const line of r.stdout.toString('utf8').trim().split('\n')) {
          const s = JSON.parse(line) as Sample;
          const k = `${c.name} | ${children[kind]} | ${s.stage}`;
          got.set(k, [...(got.get(k) ?? []), s]);
        }
      }
relay.close();

const med = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const f = (xs: readonly Sample[], k: keyof Omit<Sample, 'stage'>): string =>
  (med(xs.map((s) => s[k])) / MiB).toFixed(1);
console.log(
  `hub-floor: ${runs} fresh processes per configuration, after 2 GCs (medians, MiB); malloc: the hub's GLIBC_TUNABLES`,
);
for (const [k, xs] of got)
  console.log(
    `  ${k.padEnd(80)} RSS ${f(xs, 'rss')} (anon ${f(xs, 'anon')}, file ${f(xs, 'file')}); V8 heap total ${f(xs, 'heapTotal')}, used ${f(xs, 'heapUsed')}`,
  );
