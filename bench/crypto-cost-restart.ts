/**
 * Child of bench/crypto-cost.ts: a fresh process on a persisted, paired hub
 * seals its first item (one GOP), then a second one. Everything is imported
 * dynamically so module loading is inside the measurement. Prints one line.
 * Run by the parent: node --import tsx bench/crypto-cost-restart.ts HUB_DIR DEVICE_ID native|js GOP_BYTES
 */
const c0 = process.cpuUsage();
const t0 = performance.now();
const since = (): { wall: number; cpu: number } => {
  const u = process.cpuUsage(c0);
  return { wall: performance.now() - t0, cpu: (u.user + u.system) / 1000 };
};

const [hubDir, deviceId, crypto, gopArg] = process.argv.slice(2);
if (hubDir === undefined || deviceId === undefined || (crypto !== 'native' && crypto !== 'js'))
  throw new Error('usage: crypto-cost-restart.ts HUB_DIR DEVICE_ID native|js [GOP_BYTES]');
const gop = new Uint8Array(Number(gopArg ?? 500_000));

const { randomFillSync } = await import('node:crypto');
randomFillSync(gop);
const { loadMlsProfile } = await import('../protocol/mls-profile.js');
const { DurableFs } = await import('../hw/os/fs.js');
const { MlsHub } = await import('../firmware/mls/hub.js');
const { MlsItemSealer } = await import('../firmware/mls/sealer.js');
const profile = await loadMlsProfile({ crypto });
const loaded = since();
const hub = await MlsHub.open({ dir: hubDir, fs: new DurableFs(), deviceId, profile });
const opened = since();
const sealer = new MlsItemSealer({
  hub,
  deviceId,
  sink: { append: () => Promise.resolve() },
});
async function item(): Promise<void> {
  const w = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
  await w.write(gop);
  await w.close(1000);
}
await item();
const first = since();
await item();
const second = since();
const f = (x: number): string => x.toFixed(0);
process.stdout.write(
  `modules + profile ${f(loaded.wall)} ms (${f(loaded.cpu)} CPU-ms), hub open +${f(opened.wall - loaded.wall)} ms, ` +
    `first item +${f(first.wall - opened.wall)} ms (${f(first.cpu - opened.cpu)} CPU-ms); ` +
    `total to first item ${f(first.wall)} ms (${f(first.cpu)} CPU-ms); ` +
    `second item ${f(second.wall - first.wall)} ms (${f(second.cpu - first.cpu)} CPU-ms)\n`,
);
