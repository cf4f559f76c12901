/**
 * Relay scale-out: throughput, p95 append latency and relay memory for N
 * simulated hubs, on the embedded store (files, one process) and on
 * PostgreSQL + S3 (s3rver) with 1 and 2 relay processes, in one run.
 *
 * Each hub uploads CLIPS clips of CLIP_KB KiB in 64 KiB appends, one append
 * at a time (as the uplink does); with two relays, hub h talks to relay h % 2
 * and its phone reads everything back through the other one. PostgreSQL runs
 * durable (fsync on), like the file store (fsync per chunk).
 *
 *   npx tsx bench/relay-scale.ts [hubs=50,200] [clips=2] [clipKb=256]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startPostgres } from '../dev/fixtures/postgres.js';
import { startRelayProcess } from '../dev/fixtures/relay-process.js';
import type { RelayProcess } from '../dev/fixtures/relay-process.js';
import { startS3rver } from '../dev/fixtures/s3rver.js';
import { RelayClient } from '../protocol/relay-client.js';

const HUBS = (process.argv[2] ?? '50,200').split(',').map(Number);
const CLIPS = Number(process.argv[3] ?? 2);
const CLIP_KB = Number(process.argv[4] ?? 256);
const RECORD = 64 * 1024;

async function hwm(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024;
}

interface Result {
  setup: string;
  hubs: number;
  mib: number;
  secs: number;
  appends: number;
  p50: number;
  p95: number;
  readMibS: number;
  rss: number[];
}

const dir = await mkdtemp(join(tmpdir(), 'vigil-bench-scale-'));
const pgc = await startPostgres({ durable: true, maxConnections: 300 });
const s3 = await startS3rver(join(dir, 's3'), 'vigil-bench');
let dbs = 0;

async function runOne(setup: 'files' | 'pg+s3', relays: number, hubs: number): Promise<Result> {
  const run = `${setup === 'files' ? 'f' : 'p'}${relays}h${hubs}`;
  const args: string[] = [join(dir, run)];
  if (setup === 'pg+s3') {
    const name = `b${++dbs}`;
    const admin = new pg.Client({ connectionString: pgc.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    args.push(pgc.url.replace('/postgres?', `/${name}?`), s3.endpoint, s3.bucket);
  }
  const procs: RelayProcess[] = [];
  for (let i = 0; i < relays; i++)
    procs.push(
      await startRelayProcess([`${args[0] ?? ''}-${i}`, ...args.slice(1)], {
        script: 'bench/relay-scale-child.ts',
      }),
    );
  const urls = procs.map((p) => p.url);
  const parties = [];
  for (let h = 0; h < hubs; h++) {
    const up = urls[h % urls.length] ?? '';
    const down = urls[(h + 1) % urls.length] ?? '';
    const id = `hub-${run}-${h}`;
    const cred = await new RelayClient({ url: up }).registerDevice(id);
    const hub = new RelayClient({ url: up, token: cred.token });
    const tok = randomBytes(18).toString('base64url');
    await hub.offerRendezvous(tok);
    const ph = await new RelayClient({ url: down }).claimRendezvous(tok);
    parties.push({ hub, phone: new RelayClient({ url: down, token: ph.token }) });
  }
  const payload = randomBytes(RECORD);
  const n = Math.ceil((CLIP_KB * 1024) / RECORD);
  const lat: number[] = [];
  let peak = procs.map(() => 0);
  const sample = async (): Promise<void> => {
    const m = await Promise.all(procs.map((p) => hwm(p.pid)));
    peak = peak.map((v, i) => Math.max(v, m[i] ?? 0));
  };
  const sampler = setInterval(() => void sample(), 200);
  const t0 = performance.now();
  await Promise.all(
    parties.map(async ({ hub }, h) => {
      for (let c = 0; c < CLIPS; c++)
        for (let i = 0; i < n; i++) {
          const a0 = performance.now();
          await hub.append(
            `h${h}-clip-${c}`,
            { group: 'motion', kind: 'clip', offset: i * RECORD, final: i === n - 1 },
            payload,
          );
          lat.push(performance.now() - a0);
        }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  let readBytes = 0;
  await Promise.all(
    parties.map(async ({ phone }) => {
      for (const it of (await phone.list({})).items) {
        const got = (await phone.readAll(it.seq)).length;
        readBytes += got;
        await phone.ack(it.seq);
      }
    }),
  );
  const readSecs = (performance.now() - t1) / 1000;
  clearInterval(sampler);
  await sample();
  for (const p of procs) await p.stop();
  const total = hubs * CLIPS * n * RECORD;
  if (readBytes !== total) throw new Error(`read back ${readBytes} of ${total} bytes`);
  lat.sort((x, y) => x - y);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return {
    setup:
      setup === 'files'
        ? 'embedded files'
        : `PostgreSQL + S3, ${relays} relay${relays > 1 ? 's' : ''}`,
    hubs,
    mib: total / 1048576,
    secs,
    appends: lat.length,
    p50: pct(0.5),
    p95: pct(0.95),
    readMibS: readBytes / 1048576 / readSecs,
    rss: peak,
  };
}

const results: Result[] = [];
try {
  for (const hubs of HUBS) {
    results.push(await runOne('files', 1, hubs));
    results.push(await runOne('pg+s3', 1, hubs));
    results.push(await runOne('pg+s3', 2, hubs));
  }
} finally {
  await s3.close();
  await pgc.stop();
  await rm(dir, { recursive: true, force: true });
}

console.log(
  `relay scale-out: hubs x ${CLIPS} clips x ${CLIP_KB} KiB in ${RECORD / 1024} KiB appends, one at a time per hub`,
);
console.log(
  '| setup | hubs | upload MiB/s | appends/s | p50 append ms | p95 append ms | read-back MiB/s | relay peak RSS MiB |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const r of results)
  console.log(
    `| ${r.setup} | ${r.hubs} | ${(r.mib / r.secs).toFixed(1)} | ${(r.appends / r.secs).toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.readMibS.toFixed(1)} | ${r.rss.map((x) => x.toFixed(0)).join(' + ')} |`,
  );
