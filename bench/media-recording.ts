/**
 * Hub process CPU and RSS during 1080p30, 4 Mbit/s recording, with the encoder
 * process reported separately. Targets (issue 7): hub <= 64 MiB RSS and <= 3 %
 * of one core.
 *
 *   npx tsx bench/media-recording.ts                 # 10 minutes (the issue's figure)
 *   npx tsx bench/media-recording.ts --minutes 2     # shorter
 *   options: --source replay|simulated (default replay) --width 1920 --height 1080
 *            --fps 30 --kbps 4000 --preset ultrafast --motion-every 60 --motion-for 10
 *            --malloc hub|none|<GLIBC_TUNABLES> (default hub: the systemd unit's)
 *            --node-flags=none|"<flags>" (default: the unit's HUB_NODE_FLAGS)
 *            --sink hub|counting (default hub: retention's local copies + the durable
 *            uplink queue drained into a stand-in relay; counting: bytes counted only)
 *            --packages bundled|external (default bundled: the hub built as it ships,
 *            image/app-bundle.ts; external: packages loaded from node_modules)
 *            --relay loopback|memory (default loopback: the stand-in relay listens on a
 *            loopback port in this process and the hub sends with its HTTP client;
 *            memory: the hub's client is replaced by an in-memory answer, as before #19's
 *            sixth pass)
 *
 * The hub runs as its own plain-node process (bundled with esbuild as the product ships,
 * no TS loader):
 * MLS hub + real sealer (post-quantum suite) + the full pipeline (fMP4 parsing,
 * GOP ring, motion on the grey side stream, clips + thumbnails sealed for real).
 *
 * Sources: `replay` (default) pre-encodes a 1080p30 4 Mbit/s H.264 loop once and
 * replays it in real time through the camera-native path (`-c:v copy`), so the
 * hub sees the nominal data rate even on a machine that cannot encode 1080p30 in
 * software in real time; `simulated` runs the simulated camera + libx264 (the
 * encoder figure then includes generating the synthetic picture).
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';
import { spawnProcess, run } from '../hw/os/run.js';
import { HUB_BUNDLE_OPTIONS } from '../image/app-bundle.js';
import { SimulatedCamera } from '../hw/camera/simulated-camera.js';
import { loadMlsProfile } from '../protocol/mls-profile.js';
import { DEVICE_ID, newDevicePsk, openHub, pair, tempDir } from '../dev/fixtures/paired-hub.js';
import { MiB, arg, procThreads, procUsage, strArg, threadSplit } from './media-common.js';
import { startAckingRelay } from './hub-sink-common.js';
import { HUB_GLIBC_TUNABLES, HUB_NODE_FLAGS } from '../firmware/supervisor/malloc.js';

const minutes = arg('minutes', 10);
const source = strArg('source', 'replay');
const width = arg('width', 1920);
const height = arg('height', 1080);
const fps = arg('fps', 30);
const kbps = arg('kbps', 4000);
const preset = strArg('preset', 'ultrafast');
const every = arg('motion-every', 60);
const motionFor = arg('motion-for', 10);
const warmupS = 15;
/**
 * glibc malloc tunables for the hub process: default the hub's own
 * (firmware/supervisor/malloc.ts, as the systemd unit sets them);
 * --malloc=none for glibc's defaults, or --malloc=<GLIBC_TUNABLES value>.
 */
const mallocArg = strArg('malloc', 'hub');
const sinkArg = strArg('sink', 'hub');
if (sinkArg !== 'hub' && sinkArg !== 'counting')
  throw new Error(`--sink must be hub or counting, got "${sinkArg}"`);
const tunables =
  mallocArg === 'hub' ? HUB_GLIBC_TUNABLES : mallocArg === 'none' ? undefined : mallocArg;
/**
 * Node flags for the hub process: default the hub's own (HUB_NODE_FLAGS, as the systemd
 * unit's ExecStart passes them); --node-flags=none for none, or e.g.
 * --node-flags="--max-semi-space-size=2".
 */
const relayArg = process.argv.includes('--relay')
  ? process.argv[process.argv.indexOf('--relay') + 1]
  : 'loopback';
if (relayArg !== 'loopback' && relayArg !== 'memory')
  throw new Error('--relay is loopback or memory');
const packagesArg = strArg('packages', 'bundled');
if (packagesArg !== 'bundled' && packagesArg !== 'external')
  throw new Error('--packages is bundled or external');
const nodeFlagsArg = process.argv
  .find((a) => a.startsWith('--node-flags='))
  ?.slice('--node-flags='.length);
const nodeFlags =
  nodeFlagsArg === undefined
    ? [...HUB_NODE_FLAGS]
    : nodeFlagsArg === 'none'
      ? []
      : nodeFlagsArg.split(' ').filter(Boolean);

const root = tempDir('vigil-media-bench-');
const cacheDir = join(process.cwd(), 'node_modules', '.cache', 'vigil-bench');
await mkdir(cacheDir, { recursive: true });

// 1. Pair a companion with a hub stored in `root` (the phone stays in this process).
const profile = await loadMlsProfile();
const hub = await openHub(profile, join(root, 'hub'));
const paired = await pair({
  p: profile,
  hub,
  devicePsk: newDevicePsk(),
  phoneDir: join(root, 'phone'),
});
if (!paired.phone) throw new Error('pairing failed');

// 2. The replay loop (cached), encoded once from the simulated scene.
let replay: string | undefined;
if (source === 'replay') {
  replay = join(cacheDir, `loop-${width}x${height}-${fps}-${kbps}k.mp4`);
  if (!(await stat(replay).catch(() => undefined))) {
    process.stderr.write(
      `encoding a 10 s ${width}x${height}@${fps} ${kbps} kbit/s loop (once)...\n`,
    );
    const cam = new SimulatedCamera({ width, height, fps, schedule: { intervals: [[5, 12]] } });
    const fmt = { width, height, pixelFormat: 'YU12', fps };
    await run(
      'ffmpeg',
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-y',
        '-f',
        'lavfi',
        '-i',
        cam.lavfiGraph(fmt, 0),
        '-t',
        '10',
        '-c:v',
        'libx264',
        '-preset',
        'ultrafast',
        '-b:v',
        `${kbps}k`,
        '-maxrate',
        `${kbps}k`,
        '-bufsize',
        `${kbps * 2}k`,
        '-g',
        String(fps),
        '-keyint_min',
        String(fps),
        '-sc_threshold',
        '0',
        '-bf',
        '0',
        '-pix_fmt',
        'yuv420p',
        replay,
      ],
      { timeoutMs: 1_800_000 },
    );
  }
}

// 3. The hub process, bundled as the product ships (image/app-bundle.ts: packages bundled in,
// zod's translations left out); `--packages external` for the old harness (project code
// bundled, every package loaded from node_modules).
const hubJs = join(cacheDir, `media-recording-hub-${packagesArg}.mjs`);
await build(
  packagesArg === 'external'
    ? {
        ...HUB_BUNDLE_OPTIONS,
        packages: 'external',
        plugins: [],
        external: [],
        entryPoints: ['bench/media-recording-hub.ts'],
        outfile: hubJs,
      }
    : { ...HUB_BUNDLE_OPTIONS, entryPoints: ['bench/media-recording-hub.ts'], outfile: hubJs },
);
const seconds = warmupS + minutes * 60;
// the stand-in relay on loopback, in this process (`--relay memory`: the hub answers itself)
const relay = relayArg === 'loopback' && sinkArg === 'hub' ? await startAckingRelay() : undefined;
const child = spawnProcess(
  process.execPath,
  [
    ...nodeFlags,
    hubJs,
    JSON.stringify({
      root,
      deviceId: DEVICE_ID,
      width,
      height,
      fps,
      kbps,
      preset,
      seconds,
      every,
      motionFor,
      ...(replay ? { replay } : {}),
      sink: sinkArg,
      ...(relay ? { relayUrl: relay.url } : {}),
    }),
  ],
  { stdout: 'pipe', stderr: 'inherit', env: { ...process.env, GLIBC_TUNABLES: tunables } },
);
const hubPid = child.pid;
if (hubPid === undefined) throw new Error('hub process did not start');
let encoderPid: number | undefined;
let encoderPids = 0;
let final:
  | {
      status: { counters: Record<string, number>; encoder: { path?: string; restarts: number } };
      ciphertext: number;
      memory?: Record<string, number>;
    }
  | undefined;
let buf = '';
child.child.stdout?.setEncoding('utf8');
child.child.stdout?.on('data', (s: string) => {
  buf += s;
  let i: number;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    const j = JSON.parse(line) as { encoderPid?: number; status?: unknown };
    if (j.encoderPid !== undefined) {
      encoderPid = j.encoderPid;
      encoderPids++;
    }
    if (j.status !== undefined) final = j as typeof final;
  }
});

// 4. Sample both processes from /proc after the warm-up.
await new Promise((r) => setTimeout(r, warmupS * 1000));
const h0 = await procUsage(hubPid);
const threads0 = await procThreads(hubPid);
const e0 = encoderPid !== undefined ? await procUsage(encoderPid) : undefined;
const encPid0 = encoderPid;
const t0 = performance.now();
const hubRss: number[] = [];
const hubAnon: number[] = [];
const hubFile: number[] = [];
const encRss: number[] = [];
let h1 = h0;
let e1 = e0;
let threads1 = threads0;
const sampler = setInterval(() => {
  void procThreads(hubPid).then((t) => {
    if (t.size > 0) threads1 = t;
  });
  void procUsage(hubPid).then((u) => {
    if (u) {
      hubRss.push(u.rss);
      hubAnon.push(u.anon);
      hubFile.push(u.file);
      h1 = u;
    }
  });
  if (encoderPid !== undefined)
    void procUsage(encoderPid).then((u) => {
      if (u && encoderPid === encPid0) {
        encRss.push(u.rss);
        e1 = u;
      }
    });
}, 2000);
const progress = setInterval(() => {
  process.stderr.write(
    `[${((performance.now() - t0) / 1000).toFixed(0)} s] hub rss ${((hubRss.at(-1) ?? 0) / MiB).toFixed(1)} MiB\n`,
  );
}, 60_000);
await child.exited;
relay?.close();
clearInterval(sampler);
clearInterval(progress);
const wallS = (performance.now() - t0) / 1000;
await rm(root, { recursive: true, force: true });

const med = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const pct = (a?: { cpuS: number }, b?: { cpuS: number }): string =>
  a && b ? `${(((b.cpuS - a.cpuS) / wallS) * 100).toFixed(2)} %` : 'n/a';
const c = final?.status.counters ?? {};
console.log(
  [
    `media-recording${nodeFlags.length ? ` (node ${nodeFlags.join(' ')})` : ''}: ${source === 'replay' ? 'replayed H.264 loop (camera-native path, -c:v copy)' : `simulated camera + libx264 ${preset}`}, ${width}x${height}@${fps}, ${kbps} kbit/s, GOP 1 s; ${wallS.toFixed(0)} s measured after ${warmupS} s warm-up`,
    `  stream: ${c.fragments ?? 0} fragments, ${((c.bytes ?? 0) / MiB).toFixed(1)} MiB; clips sealed ${c.clips ?? 0}, thumbnails ${c.thumbnails ?? 0}; ciphertext ${((final?.ciphertext ?? 0) / MiB).toFixed(1)} MiB; encoder path ${final?.status.encoder.path ?? '?'}, encoder processes ${encoderPids}`,
    `  hub bundle: packages ${packagesArg === 'bundled' ? 'bundled in, as shipped (image/app-bundle.ts)' : 'external (node_modules)'}; hub malloc: ${tunables === undefined ? 'glibc defaults' : `GLIBC_TUNABLES=${tunables}`}; sink: ${sinkArg === 'hub' ? `hub (local copies + durable uplink queue, stand-in relay ${relay ? `on loopback: ${String(relay.stats().requests)} requests on ${String(relay.stats().connections)} connections` : 'in memory'})` : 'counting'}`,
    `  hub process:     CPU ${pct(h0, h1)} of one core (target <= 3 %), RSS median ${(med(hubRss) / MiB).toFixed(1)} MiB, max ${(Math.max(...hubRss) / MiB).toFixed(1)} MiB (target <= 64 MiB); medians anon ${(med(hubAnon) / MiB).toFixed(1)}, file ${(med(hubFile) / MiB).toFixed(1)} MiB`,
    `  hub CPU by thread: ${threadSplit(hubPid, threads0, threads1, wallS)}`,
    `  hub memory (process.memoryUsage medians, MiB): ${Object.entries(final?.memory ?? {})
      .map(([k, v]) => `${k} ${(v / MiB).toFixed(1)}`)
      .join(', ')}`,
    `  encoder process: CPU ${pct(e0, e1)} of one core, RSS median ${(med(encRss) / MiB).toFixed(1)} MiB (ffmpeg${source === 'replay' ? ': demux + copy + keyframe decode for motion' : ' incl. synthetic source'})`,
  ].join('\n'),
);
