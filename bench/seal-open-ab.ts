/**
 * Seal and open of one 1080p30 4 Mbit/s minute, A/B between two checkouts in one
 * process, interleaved round by round (the order alternates), so both see the same
 * load: on a shared machine the medians of two separate runs move more than the
 * change being measured. Each checkout uses its own hub, phone, sealer and reader
 * (the native provider); the sink appends to a file (records as one vectored write
 * per GOP), the open side reads the pieces back as they were appended. The other
 * checkout's phone is opened the way that checkout can: an older one assembles
 * the item (`finish()`), this one streams (`keepPlaintext: false`, `end()`).
 *
 * Run: npx tsx bench/seal-open-ab.ts <other checkout> [rounds=30]
 *   (the other checkout needs node_modules; e.g. `git archive <commit> | tar -x -C dir`
 *   and a node_modules symlink)
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { cpuMs, pairedCheckout } from './checkout-ab.js';

interface Reader {
  push(b: Uint8Array): Promise<readonly { type: string; plaintext?: Uint8Array }[]>;
  finish(): unknown;
  end?: () => unknown;
}
interface Rig {
  readonly root: string;
  seal(): Promise<void>;
  open(): Promise<void>;
}

const other = process.argv[2];
if (other === undefined) throw new Error('usage: bench/seal-open-ab.ts <other checkout> [rounds]');
const ROUNDS = Math.max(5, Number(process.argv[3] ?? 30));
const GOPS = 60;
const GOP_BYTES = 500_000;
const gops = Array.from({ length: GOPS }, () => randomBytes(GOP_BYTES));

async function rig(name: string, dir: string, streaming: boolean): Promise<Rig> {
  const { fx, root, hub, phone } = await pairedCheckout(name, dir, 'vigil-ab-');
  const file = join(root, 'item.bin');
  const pieces: number[] = [];
  return {
    root,
    async seal() {
      pieces.length = 0;
      const fd = openSync(file, 'w');
      const sink = {
        append: (_i: string, _k: string, b: Uint8Array) => {
          pieces.push(writeSync(fd, b));
          return Promise.resolve();
        },
        // records (this checkout) or flat parts (older ones): flat() takes both
        appendParts: (_i: string, _k: string, parts: readonly unknown[]) => {
          const flat = parts.flat() as Uint8Array[];
          let n = 0;
          for (let i = 0; i < flat.length; i += 1024) n += writevSync(fd, flat.slice(i, i + 1024));
          pieces.push(n);
          return Promise.resolve();
        },
      };
      const w = await fx
        .sealerFor(hub, sink)
        .begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
      for (const g of gops) await w.write(g);
      await w.close(60_000);
      closeSync(fd);
    },
    async open() {
      const open = phone.openItem.bind(phone) as (o?: { keepPlaintext: boolean }) => Reader;
      const r = streaming ? open({ keepPlaintext: false }) : open();
      const fd = openSync(file, 'r');
      let pos = 0;
      let n = 0;
      for (const len of pieces) {
        const b = Buffer.allocUnsafe(len);
        readSync(fd, b, 0, len, pos);
        pos += len;
        for (const e of await r.push(b)) if (e.type === 'chunk') n += e.plaintext?.length ?? 0;
      }
      closeSync(fd);
      if (streaming) r.end?.();
      else r.finish();
      if (n !== GOPS * GOP_BYTES) throw new Error(`${name}: opened ${n} bytes`);
    },
  };
}

const rigs = {
  other: await rig('other', resolve(other), false),
  this: await rig('this', resolve('.'), true),
};
const cpu: Record<string, number[]> = {};
for (let r = -1; r < ROUNDS; r++) {
  for (const name of r % 2 === 0 ? (['this', 'other'] as const) : (['other', 'this'] as const)) {
    const c0 = cpuMs();
    await rigs[name].seal();
    const c1 = cpuMs();
    await rigs[name].open();
    const c2 = cpuMs();
    if (r < 0) continue; // warm-up
    (cpu[`${name} seal`] ??= []).push(c1 - c0);
    (cpu[`${name} open`] ??= []).push(c2 - c1);
  }
}
console.log(
  `# seal/open A/B, one 1080p30 4 Mbit/s minute, ${ROUNDS} interleaved rounds; other = ${other}`,
);
for (const [k, v] of Object.entries(cpu)) {
  const s = [...v].sort((a, b) => a - b);
  const f = (x: number | undefined): string => (x ?? NaN).toFixed(0);
  console.log(
    `${k}: min ${f(s[0])} / median ${f(s[Math.floor(s.length / 2)])} / max ${f(s[s.length - 1])} CPU-ms; total ${f(v.reduce((a, b) => a + b, 0))}`,
  );
}
for (const r of Object.values(rigs)) await rm(r.root, { recursive: true, force: true });
