/**
 * Container encrypt/decrypt throughput on 64 KiB chunks, as a ratio to raw
 * node:crypto ChaCha20-Poly1305 over the same chunks in the same run.
 * Run: npx tsx bench/mls-container.ts [MiB]
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  containerError,
  ContainerReader,
  ContainerWriter,
  newContentKey,
  newItemId,
  sealHeader,
  unwrapContentKey,
  type HeaderCore,
} from '../protocol/container.js';

const CHUNK = 64 * 1024;
const MIB = Number(process.argv[2] ?? 64);
const chunks = Array.from({ length: (MIB * 1024 * 1024) / CHUNK }, () => randomBytes(CHUNK));
const total = chunks.length * CHUNK;

function mbps(bytes: number, ms: number): number {
  return bytes / 1024 / 1024 / (ms / 1000);
}

function rawEncrypt(key: Buffer): Buffer[] {
  return chunks.map((c, i) => {
    const n = Buffer.alloc(12);
    n.writeUInt32BE(i, 8);
    const ci = createCipheriv('chacha20-poly1305', key, n, { authTagLength: 16 });
    ci.setAAD(n, { plaintextLength: c.length });
    return Buffer.concat([ci.update(c), ci.final(), ci.getAuthTag()]);
  });
}
function rawDecrypt(key: Buffer, sealed: Buffer[]): number {
  let n = 0;
  sealed.forEach((s, i) => {
    const nonce = Buffer.alloc(12);
    nonce.writeUInt32BE(i, 8);
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    d.setAAD(nonce, { plaintextLength: s.length - 16 });
    d.setAuthTag(s.subarray(s.length - 16));
    n += Buffer.concat([d.update(s.subarray(0, s.length - 16)), d.final()]).length;
  });
  return n;
}

function containerEncrypt(): { records: Buffer[]; wrapKey: Buffer } {
  const itemId = newItemId();
  const cek = newContentKey();
  const wrapKey = randomBytes(32);
  const core: HeaderCore = {
    itemId,
    kind: 'clip',
    flags: 0,
    deviceId: 'bench',
    startedAt: 0,
    codec: 'video/mp4',
    chunkSize: CHUNK,
    recipients: [{ groupId: Buffer.alloc(16), epoch: 1n, handshake: Buffer.alloc(3000) }],
  };
  const h = sealHeader(core, cek, [wrapKey]);
  const w = new ContainerWriter(cek, itemId, h.digest, CHUNK);
  const records = [h.record];
  for (const c of chunks) records.push(...w.seal(c));
  records.push(w.end('complete', 1));
  return { records, wrapKey };
}
function containerDecrypt(records: Buffer[], wrapKey: Buffer): number {
  const r = new ContainerReader();
  let n = 0;
  for (const rec of records) {
    const res = r.push(rec);
    if (!res.ok) throw containerError(res);
    for (const e of res.value) {
      if (e.type === 'header') {
        const k = unwrapContentKey(wrapKey, e.header, 0);
        if (!k.ok) throw containerError(k);
        r.setKey(k.value);
      } else if (e.type === 'chunk') n += e.plaintext.length;
    }
  }
  const fin = r.finish();
  if (!fin.ok) throw containerError(fin);
  return n;
}

function time<T>(fn: () => T): [T, number] {
  const s = performance.now();
  const v = fn();
  return [v, performance.now() - s];
}

const key = randomBytes(32);
// warm up
rawDecrypt(key, rawEncrypt(key).slice(0, 8));
containerEncrypt();
const rounds = 3;
const res = { rawEnc: 0, rawDec: 0, conEnc: 0, conDec: 0 };
for (let i = 0; i < rounds; i++) {
  const [sealed, te] = time(() => rawEncrypt(key));
  const [, td] = time(() => rawDecrypt(key, sealed));
  const [c, ce] = time(() => containerEncrypt());
  const [n, cd] = time(() => containerDecrypt(c.records, c.wrapKey));
  if (n !== total) throw new Error('container decrypt size mismatch');
  res.rawEnc = Math.max(res.rawEnc, mbps(total, te));
  res.rawDec = Math.max(res.rawDec, mbps(total, td));
  res.conEnc = Math.max(res.conEnc, mbps(total, ce));
  res.conDec = Math.max(res.conDec, mbps(total, cd));
}
console.log(
  `container vs raw node:crypto chacha20-poly1305, ${MIB} MiB in 64 KiB chunks (best of ${rounds})`,
);
console.log(
  `  encrypt: container ${res.conEnc.toFixed(0)} MiB/s, raw ${res.rawEnc.toFixed(0)} MiB/s, ratio ${(res.conEnc / res.rawEnc).toFixed(2)}`,
);
console.log(
  `  decrypt: container ${res.conDec.toFixed(0)} MiB/s, raw ${res.rawDec.toFixed(0)} MiB/s, ratio ${(res.conDec / res.rawDec).toFixed(2)}`,
);
