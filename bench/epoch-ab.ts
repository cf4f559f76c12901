/**
 * The MLS part of an item, A/B between two checkouts in one process (issue #19):
 * small items (1 KB), so what is measured is the hub's epoch advance with its durable
 * writes, header and end record (`sealer.begin` … `close`) and the phone's commit
 * processing with its durable writes (the streaming reader over the whole item).
 * Each checkout has its own hub and phone (native provider, real files through
 * DurableFs); rounds interleave with alternating order, so both see the same load.
 *
 * Run: npx tsx bench/epoch-ab.ts <other checkout> [rounds=100]
 *   (the other checkout needs node_modules; e.g. a `git worktree` with a node_modules symlink)
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { cpuMs, pairedCheckout } from './checkout-ab.js';

interface Rig {
  readonly root: string;
  /** One item: returns the hub's and the phone's CPU-ms. */
  item(): Promise<{ hub: number; phone: number }>;
}

const other = process.argv[2];
if (other === undefined) throw new Error('usage: bench/epoch-ab.ts <other checkout> [rounds]');
const ROUNDS = Math.max(10, Number(process.argv[3] ?? 100));
const payload = randomBytes(1000);

async function rig(name: string, dir: string): Promise<Rig> {
  const { fx, root, hub, phone } = await pairedCheckout(name, dir, 'vigil-epoch-ab-');
  return {
    root,
    async item() {
      const sink = new fx.MemorySink();
      const c0 = cpuMs();
      const w = await fx
        .sealerFor(hub, sink)
        .begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
      await w.write(payload);
      await w.close(1);
      const c1 = cpuMs();
      const r = phone.openItem({ keepPlaintext: false });
      let n = 0;
      for (const e of await r.push(sink.bytes(w.itemId)))
        if (e.type === 'chunk') n += e.plaintext.length;
      r.end();
      const c2 = cpuMs();
      if (n !== payload.length) throw new Error(`${name}: opened ${n} bytes`);
      return { hub: c1 - c0, phone: c2 - c1 };
    },
  };
}

const rigs = { other: await rig('other', resolve(other)), this: await rig('this', resolve('.')) };
const cpu: Record<string, number[]> = {};
for (let r = -3; r < ROUNDS; r++) {
  for (const name of r % 2 === 0 ? (['this', 'other'] as const) : (['other', 'this'] as const)) {
    const m = await rigs[name].item();
    if (r < 0) continue; // warm-up
    (cpu[`${name} hub`] ??= []).push(m.hub);
    (cpu[`${name} phone`] ??= []).push(m.phone);
  }
}
console.log(
  `# MLS part of an item (1 KB items), A/B, ${ROUNDS} interleaved rounds; other = ${other}`,
);
for (const [k, v] of Object.entries(cpu)) {
  const s = [...v].sort((a, b) => a - b);
  const f = (x: number | undefined): string => (x ?? NaN).toFixed(2);
  console.log(
    `${k}: min ${f(s[0])} / median ${f(s[Math.floor(s.length / 2)])} / p90 ${f(s[Math.floor(s.length * 0.9)])} CPU-ms; total ${v.reduce((a, b) => a + b, 0).toFixed(0)}`,
  );
}
for (const r of Object.values(rigs)) await rm(r.root, { recursive: true, force: true });
