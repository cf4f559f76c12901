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
 * The paths run interleaved in one process, in a rotating order, ≥ 5 rounds;
 * CPU is process.cpuUsage() (user + system) so load on a shared machine
 * matters less than for wall-clock figures.
 *
 * Also, per crypto provider (native = node:crypto, js = ts-mls default):
 * the fixed cost per motion event (a clip and its thumbnail: two items, two
 * epoch advances, hub and phone), the epoch advance p50/p90 (commit + the
 * persisted writes, 1 phone, wall-clock), and the first item after a restart
 * (a fresh `node --import tsx` process: import, profile load, hub open, first
 * item; tsx transpiles our TypeScript on the fly, which a built image does not).
 *
 * Run: npx tsx bench/crypto-cost.ts [rounds=5] [advances=20] [events=6] [restarts=2]
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, rmSync, writeSync, writevSync } from 'node:fs';
import { join } from 'node:path';
import type { CiphertextSink } from '../firmware/items.js';
import type { MlsHub } from '../firmware/mls/hub.js';
import type { MlsItemSealer } from '../firmware/mls/sealer.js';
import type { E2eePhone } from '../app/e2ee/phone.js';
import type { ItemKind } from '../protocol/items.js';
import { loadMlsProfile, type MlsCrypto } from '../protocol/mls-profile.js';
import { run } from '../hw/os/run.js';
import {
  DEVICE_ID,
  newDevicePsk,
  openHub,
  pair,
  sealerFor,
  tempDir,
} from '../dev/fixtures/paired-hub.js';

const ROUNDS = Math.max(5, Number(process.argv[2] ?? 5));
const ADVANCES = Number(process.argv[3] ?? 20);
const EVENTS = Number(process.argv[4] ?? 6);
const RESTARTS = Number(process.argv[5] ?? 2);

const GOP_BYTES = 500_000; // 4 Mbit/s, one GOP per second
const GOPS_PER_MINUTE = 60;
const RECORD = 64 * 1024;
const TAG = 16;
const PROVIDERS: readonly MlsCrypto[] = ['native', 'js'];

// ---- small helpers -------------------------------------------------------------------

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
async function measure(fn: () => Promise<void> | void): Promise<{ cpu: number; wall: number }> {
  const c = cpuMs();
  const w = performance.now();
  await fn();
  return { cpu: cpuMs() - c, wall: performance.now() - w };
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

const root = tempDir('vigil-bench-crypto-');
const rigs: Rig[] = [];
try {
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
        });
        closeSync(fd);
        add('bare seal', m.cpu);
      },
      open: async () => {
        const f = join(root, 'bare.bin');
        const m = await measure(() => {
          if (bareOpen(f, bareSizes) !== total) throw new Error('bare open size');
        });
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
          const m = await measure(() => hubSeal(sealer));
          sink.close();
          sizes = sink.sizes;
          add(`vigil seal (${rig.crypto})`, m.cpu);
        },
        open: async () => {
          const m = await measure(async () => {
            if ((await phoneOpen(rig.phone, f, sizes)) !== total) throw new Error('open size');
          });
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
  for (let r = 0; r < ROUNDS; r++) {
    const order = paths.map((_, i) => paths[(i + r) % paths.length] as Path);
    for (const pth of order) await pth.seal();
    for (const pth of order) await pth.open();
  }

  console.log(
    `# crypto CPU per video-minute: 1080p30 4 Mbit/s = ${GOPS_PER_MINUTE} x ${GOP_BYTES} B GOPs ` +
      `(random bytes), 64 KiB records, one item per minute, ${ROUNDS} interleaved rounds`,
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
      console.log(
        `vigil ${dir} (${rig.crypto} crypto): ${mmm(
          xs.map((x) => x / 1000),
          3,
          ' CPU-s',
        )}; ratio to bare ${(median(xs) / median(bare[dir])).toFixed(2)} (per round ${mmm(ratios, 2)})`,
      );
    }

  // ---- per event (clip + thumbnail) and epoch advance, per provider ---------------------------
  console.log('# fixed MLS cost per motion event (clip + thumbnail items, tiny payloads)');
  const small = randomBytes(1000);
  const adv = new Map<MlsCrypto, { wall: number[]; cpu: number[] }>();
  /** Per provider and mode: 'shared' = thumbnail in the clip's epoch (now), 'own' = its own epoch (before). */
  const ev = new Map<string, { hub: number[]; phone: number[] }>();
  for (const rig of rigs) adv.set(rig.crypto, { wall: [], cpu: [] });
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
      const m = await measure(async () => {
        w = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
      });
      await w?.close(1);
      sink.close();
      await phoneOpen(rig.phone, sink.path, sink.sizes); // keeps the journal short, not timed
      adv.get(rig.crypto)?.wall.push(m.wall);
      adv.get(rig.crypto)?.cpu.push(m.cpu);
    }
  for (const rig of rigs) {
    const a = adv.get(rig.crypto);
    if (a === undefined) continue;
    console.log(
      `epoch advance, ${rig.crypto} crypto: p50 ${pct(a.wall, 0.5).toFixed(1)} ms, p90 ${pct(a.wall, 0.9).toFixed(1)} ms wall; CPU median ${median(a.cpu).toFixed(1)} ms (n=${ADVANCES})`,
    );
  }

  // ---- first item after a restart (fresh process on the persisted hub) -----------------------
  console.log('# first item after a restart: fresh node --import tsx process on the hub state');
  const child = join(import.meta.dirname, 'crypto-cost-restart.ts');
  for (let i = 0; i < RESTARTS; i++)
    for (const rig of rigs) {
      const res = await run(
        process.execPath,
        ['--import', 'tsx', child, rig.hubDir, DEVICE_ID, rig.crypto, String(GOP_BYTES)],
        { timeoutMs: 60_000 },
      );
      console.log(`restart, ${rig.crypto} crypto: ${res.stdout.toString().trim()}`);
    }
} finally {
  rmSync(root, { recursive: true, force: true });
}
