/**
 * The hub's real sink per sealed video-minute (issue #19): a minute of 1080p30 at
 * 4 Mbit/s (60 GOPs of 500,000 random bytes, one write per GOP, 64 KiB records)
 * sealed by the real `MlsItemSealer` into what the hub composes —
 * `HubRetention.sink(uplink)`: the local copy kept in the data volume, then the
 * durable uplink queue — and drained by the uplink's sender into a stand-in relay
 * (an in-memory HTTP client that acknowledges every append: no network, the hub's own work only).
 *
 * Prints, min / median / max over the rounds: CPU-s of sealing into the sink (what
 * the sealer waits for: every append durable), wall seconds of the same, CPU-s of
 * draining the queue (read, send, remove), and the segment files and fsyncs per
 * minute. Uses only APIs older hubs had too, so the same file measures a checkout
 * of an earlier commit (run it from that tree) for a before/after.
 *
 * Run: npx tsx bench/hub-sink.ts [rounds=5]
 */
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { JsonLogger } from '../base/logger.js';
import { loadMlsProfile } from '../protocol/mls-profile.js';
import { ackingRelayHttp, openBenchHubSink } from './hub-sink-common.js';
import {
  DEVICE_ID,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../dev/fixtures/paired-hub.js';

const ROUNDS = Math.max(3, Number(process.argv[2] ?? 5));
const GOP_BYTES = 500_000;
const GOPS = 60;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
function mmm(xs: readonly number[], digits: number): string {
  const s = [...xs].sort((a, b) => a - b);
  const f = (x: number | undefined): string => (x ?? NaN).toFixed(digits);
  return `min ${f(s[0])} / median ${f(s[Math.floor(s.length / 2)])} / max ${f(s[s.length - 1])}`;
}

const gops = Array.from({ length: GOPS }, () => randomBytes(GOP_BYTES));
const root = tempDir('vigil-bench-sink-');
const logger = new JsonLogger('bench', {
  level: 'warn',
  write: (l) => process.stderr.write(`${l}\n`),
});
let relayed = 0;
const relayHttp = ackingRelayHttp((n) => {
  relayed += n;
});

try {
  const p = await loadMlsProfile();
  const hub = await openHub(p, join(root, 'hub'));
  const paired = await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'ph') });
  if (paired.phone === undefined) throw new Error('pairing failed');
  const { uplink, retention, dataDir } = await openBenchHubSink({
    root,
    deviceId: DEVICE_ID,
    logger,
    http: relayHttp,
  });
  const queueDir = join(dataDir, 'uplink');
  const sealer = sealerFor(hub, retention.sink(uplink));

  const seal: number[] = [];
  const wall: number[] = [];
  const drain: number[] = [];
  let files = 0;
  for (let r = -1; r < ROUNDS; r++) {
    // sealing, with the sender stopped: what the sealer waits for
    const c0 = cpuMs();
    const w0 = performance.now();
    const w = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
    for (const g of gops) await w.write(g);
    await w.close(60_000);
    const c1 = cpuMs();
    const w1 = performance.now();
    const queued = (await readdir(queueDir)).filter((n) => n.endsWith('.seg')).length;
    // then the sender drains it into the stand-in relay
    uplink.start();
    await uplink.drained();
    await uplink.stop();
    const c2 = cpuMs();
    await rm(join(dataDir, 'clips'), { recursive: true, force: true });
    if (r < 0) continue; // warm-up
    seal.push((c1 - c0) / 1000);
    wall.push((w1 - w0) / 1000);
    drain.push((c2 - c1) / 1000);
    files = queued;
  }
  console.log(
    `# hub sink (local copy + durable uplink queue + sender into a stand-in relay), ` +
      `1080p30 4 Mbit/s minute = ${GOPS} x ${GOP_BYTES} B GOPs, ${ROUNDS} rounds`,
  );
  console.log(`seal into the sink: ${mmm(seal, 3)} CPU-s; wall ${mmm(wall, 2)} s`);
  console.log(`sender drain (read, send, remove): ${mmm(drain, 3)} CPU-s`);
  console.log(
    `queue segment files per minute: ${files} (each: 2 fsyncs to write, 1 to remove); ` +
      `relayed ${(relayed / 2 ** 20 / (ROUNDS + 1)).toFixed(1)} MiB per minute`,
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
