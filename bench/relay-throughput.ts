/**
 * Relay throughput and memory with N simulated hubs uploading at once.
 *
 * One relay process (files on local disk, every chunk fsynced) and N hubs in
 * this process, each with its own durable uplink queue, each uploading CLIPS
 * clips of CLIP_KB KiB in 64 KiB sealed-size records (the container's chunk).
 * A phone per hub then reads everything back. Prints upload MB/s, requests/s,
 * the relay's peak RSS (VmHWM) and the per-hub drain time.
 *
 *   npx tsx bench/relay-throughput.ts [hubs=50] [clips=4] [clipKb=1024]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../hw/os/fs.js';
import { spawnProcess } from '../hw/os/run.js';
import { SILENT } from '../base/logger.js';
import { createUplink } from '../firmware/uplink/uplink.js';
import { devPairRelay } from '../app/account.js';
import { RelayClient } from '../protocol/relay-client.js';

const HUBS = Number(process.argv[2] ?? 50);
const CLIPS = Number(process.argv[3] ?? 4);
const CLIP_KB = Number(process.argv[4] ?? 1024);
const RECORD = 64 * 1024;

async function vmHwm(pid: number): Promise<{ rss: number; hwm: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

const dir = await mkdtemp(join(tmpdir(), 'vigil-bench-relay-'));
const child = spawnProcess(
  'node',
  ['--import', 'tsx', 'bench/relay-child.ts', join(dir, 'relay')],
  { stdout: 'pipe', stderr: 'inherit' },
);
const url = await new Promise<string>((resolve, reject) => {
  let buf = '';
  child.child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const line = buf.split('\n')[0];
    if (buf.includes('\n') && line) resolve(line.trim());
  });
  void child.exited.then(() => {
    reject(new Error('relay child exited'));
  });
});
const pid = child.pid ?? 0;
const idle = await vmHwm(pid);

const hubs = [];
for (let h = 0; h < HUBS; h++) {
  const acc = await devPairRelay(url, `bench-hub-${String(h).padStart(3, '0')}`);
  const up = await createUplink({
    relayUrl: url,
    credentials: acc.device,
    stateDir: join(dir, `hub-${h}`),
    fs: new DurableFs(),
    logger: SILENT,
    backoff: { initialMs: 50, maxMs: 1000 },
  });
  hubs.push({ up, phone: new RelayClient({ url, token: acc.phone.token }) });
}
const payload = randomBytes(RECORD);
let peak = idle.hwm;
const sampler = setInterval(() => {
  void vmHwm(pid).then((m) => {
    peak = Math.max(peak, m.hwm);
  });
}, 200);

const totalBytes = HUBS * CLIPS * CLIP_KB * 1024;
const records = HUBS * CLIPS * Math.ceil((CLIP_KB * 1024) / RECORD);
const t0 = performance.now();
const drainTimes: number[] = [];
await Promise.all(
  hubs.map(async ({ up }, h) => {
    up.start();
    for (let c = 0; c < CLIPS; c++) {
      const id = `h${h}-clip-${c}`;
      const n = Math.ceil((CLIP_KB * 1024) / RECORD);
      for (let i = 0; i < n; i++) await up.append(id, 'clip', payload, i === n - 1);
    }
    await up.drained();
    drainTimes.push(performance.now() - t0);
  }),
);
const upSecs = (performance.now() - t0) / 1000;

const t1 = performance.now();
let readBytes = 0;
await Promise.all(
  hubs.map(async ({ phone }) => {
    for (const it of (await phone.list({})).items) {
      const n = (await phone.readAll(it.seq)).length;
      readBytes += n;
      await phone.ack(it.seq);
    }
  }),
);
const readSecs = (performance.now() - t1) / 1000;
clearInterval(sampler);
const end = await vmHwm(pid);
peak = Math.max(peak, end.hwm);
for (const { up } of hubs) await up.stop();
await child.stop(5000);
await rm(dir, { recursive: true, force: true });

drainTimes.sort((a, b) => a - b);
const pct = (p: number): number =>
  drainTimes[Math.min(drainTimes.length - 1, Math.floor(p * drainTimes.length))] ?? 0;
console.log(
  `relay throughput: ${HUBS} hubs x ${CLIPS} clips x ${CLIP_KB} KiB in ${RECORD / 1024} KiB appends (fs backend, fsync per chunk)`,
);
console.log(
  `  upload:   ${(totalBytes / 1048576).toFixed(0)} MiB in ${upSecs.toFixed(2)} s = ${(totalBytes / 1048576 / upSecs).toFixed(1)} MiB/s, ${(records / upSecs).toFixed(0)} appends/s`,
);
console.log(
  `  hub drain time: median ${(pct(0.5) / 1000).toFixed(2)} s, p95 ${(pct(0.95) / 1000).toFixed(2)} s`,
);
console.log(
  `  download: ${(readBytes / 1048576).toFixed(0)} MiB in ${readSecs.toFixed(2)} s = ${(readBytes / 1048576 / readSecs).toFixed(1)} MiB/s (read + ack + delete)`,
);
console.log(
  `  relay memory: idle RSS ${idle.rss.toFixed(0)} MiB, peak RSS (VmHWM) ${peak.toFixed(0)} MiB`,
);
