/**
 * Epoch advance including the durable persist (journal + group file + journal
 * strip, each fsynced), the phone's side of it, and the same item sent as MLS
 * application messages (Secluso's way) for comparison with the container.
 * Run: npx tsx bench/mls-epoch.ts [advances]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../hw/os/fs.js';
import { MlsHub } from '../firmware/mls/hub.js';
import { MlsItemSealer } from '../firmware/mls/sealer.js';
import type { CiphertextSink } from '../firmware/items.js';
import {
  decodeMessage,
  encodeMessage,
  loadMlsProfile,
  type MlsProfile,
} from '../protocol/mls-profile.js';
import { pair } from '../dev/fixtures/paired-hub.js';

const N = Number(process.argv[2] ?? 40);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}
function p90(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length * 0.9)] ?? 0;
}

async function setup(p: MlsProfile, root: string, phones: number) {
  const psk = { id: randomBytes(16), secret: randomBytes(32) };
  const hub = await MlsHub.open({
    dir: join(root, 'hub'),
    fs: new DurableFs(),
    deviceId: 'bench',
    profile: p,
  });
  const out = [];
  for (let i = 0; i < phones; i++) {
    let usePsk = psk;
    if (i > 0) {
      const inv = await hub.createInvite('bench');
      usePsk = {
        id: Buffer.from(inv.pskId, 'base64url'),
        secret: Buffer.from(inv.psk, 'base64url'),
      };
    }
    const { phone } = await pair({
      p,
      hub,
      devicePsk: psk,
      phonePsk: usePsk,
      phoneDir: join(root, `phone${i}`),
    });
    if (phone === undefined) throw new Error('pairing failed');
    out.push(phone);
  }
  return { hub, phones: out };
}

const p = await loadMlsProfile();
const root = mkdtempSync(join(tmpdir(), 'vigil-bench-'));
try {
  for (const phones of [1, 2]) {
    const { hub, phones: ph } = await setup(p, join(root, String(phones)), phones);
    const adv: number[] = [];
    const recv: number[] = [];
    const chunks: Buffer[] = [];
    const sink: CiphertextSink = {
      append: (_id, _k, b) => {
        chunks.push(Buffer.from(b));
        return Promise.resolve();
      },
    };
    const sealer = new MlsItemSealer({ hub, sink, deviceId: 'bench' });
    for (let i = 0; i < N; i++) {
      chunks.length = 0;
      const s = performance.now();
      const w = await sealer.begin({ kind: 'clip', startedAt: Date.now(), codec: 'video/mp4' });
      adv.push(performance.now() - s);
      await w.write(Buffer.alloc(1000));
      await w.close(1);
      const bytes = Buffer.concat(chunks);
      const r = performance.now();
      await ph[0]!.decryptItem(bytes);
      recv.push(performance.now() - r);
      for (const other of ph.slice(1)) await other.decryptItem(bytes);
    }
    console.log(
      `epoch advance incl. durable persist, ${phones} phone(s): median ${median(adv).toFixed(1)} ms, p90 ${p90(adv).toFixed(1)} ms (n=${N})`,
    );
    console.log(
      `phone: process commit + persist key and state: median ${median(recv).toFixed(1)} ms`,
    );
  }

  // The same 5 MB item (10 s of 4 Mbit/s video) as MLS application messages of 64 KiB.
  const { hub, phones } = await setup(p, join(root, 'app'), 1);
  const phone = phones[0]!;
  const item = randomBytes(5 * 1024 * 1024);
  // the phone sends (the hub would; the cost is symmetric) and the phone itself cannot read its own messages,
  // so measure create on one state and process on a copy of the hub's config state via a hub-sealed stream:
  let enc = 0;
  let dec = 0;
  const msgs: Uint8Array[] = [];
  const s = performance.now();
  for (let off = 0; off < item.length; off += 64 * 1024)
    msgs.push(
      await hub.sealFor(phone.phoneId, {
        t: 'app',
        topic: 'bench',
        body: item.subarray(off, off + 64 * 1024).toString('base64url'),
      }),
    );
  enc = performance.now() - s;
  const r = performance.now();
  for (const m of msgs) await phone.receive(m);
  dec = performance.now() - r;
  const mb = item.length / 1024 / 1024;
  console.log(
    `same item as MLS application messages (64 KiB, incl. per-message persist): send ${(mb / (enc / 1000)).toFixed(1)} MiB/s, receive ${(mb / (dec / 1000)).toFixed(1)} MiB/s`,
  );
  // without persistence, the raw ts-mls cost
  const gkp = await p.mls.generateKeyPackage(
    { credentialType: 'basic', identity: Buffer.from('a') },
    p.mls.defaultCapabilities(),
    p.mls.defaultLifetime,
    [],
    p.cs,
  );
  let g = await p.mls.createGroup(randomBytes(8), gkp.publicPackage, gkp.privatePackage, [], p.cs);
  const bkp = await p.mls.generateKeyPackage(
    { credentialType: 'basic', identity: Buffer.from('b') },
    p.mls.defaultCapabilities(),
    p.mls.defaultLifetime,
    [],
    p.cs,
  );
  const c = await p.mls.createCommit(
    { state: g, cipherSuite: p.cs },
    {
      extraProposals: [{ proposalType: 'add', add: { keyPackage: bkp.publicPackage } }],
      ratchetTreeExtension: true,
    },
  );
  g = c.newState;
  let b = await p.mls.joinGroup(
    c.welcome!,
    bkp.publicPackage,
    bkp.privatePackage,
    p.mls.emptyPskIndex,
    p.cs,
  );
  const raw: Uint8Array[] = [];
  const rs = performance.now();
  for (let off = 0; off < item.length; off += 64 * 1024) {
    const m = await p.mls.createApplicationMessage(g, item.subarray(off, off + 64 * 1024), p.cs);
    g = m.newState;
    raw.push(
      encodeMessage(p, {
        version: 'mls10',
        wireformat: 'mls_private_message',
        privateMessage: m.privateMessage,
      }),
    );
  }
  const re = performance.now() - rs;
  const rd0 = performance.now();
  for (const m of raw) {
    const d = decodeMessage(p, m);
    if (d?.wireformat !== 'mls_private_message') throw new Error('x');
    const out = await p.mls.processPrivateMessage(b, d.privateMessage, p.mls.emptyPskIndex, p.cs);
    b = out.newState;
  }
  const rd = performance.now() - rd0;
  // breakdown: the commit alone, and the three durable writes alone
  const commits: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const cc = await p.mls.createCommit({ state: g, cipherSuite: p.cs });
    commits.push(performance.now() - t0);
    g = cc.newState;
  }
  const fs = new DurableFs();
  const writes: number[] = [];
  const blob = randomBytes(5500);
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await fs.writeFileAtomic(join(root, 'j.rec'), blob);
    await fs.writeFileAtomic(join(root, 'g.state'), blob);
    await fs.writeFileAtomic(join(root, 'j.rec'), blob.subarray(0, 3000));
    writes.push(performance.now() - t0);
  }
  console.log(
    `breakdown: ts-mls self-update commit alone median ${median(commits).toFixed(1)} ms; 3 durable atomic writes median ${median(writes).toFixed(1)} ms`,
  );
  console.log(
    `same item as raw ts-mls application messages (64 KiB, no persist): send ${(mb / (re / 1000)).toFixed(1)} MiB/s, receive ${(mb / (rd / 1000)).toFixed(1)} MiB/s`,
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
