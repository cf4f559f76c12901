import t from 'tap';
import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  CONTAINER_MAGIC,
  containerError,
  ContainerReader,
  ContainerWriter,
  decodeHeaderCore,
  encodeHeaderCore,
  indexRecords,
  newContentKey,
  newItemId,
  openChunkAt,
  parseHeader,
  RECORD_HEADER_LENGTH,
  RECORD_TYPE,
  sealHeader,
  unwrapContentKey,
  type HeaderCore,
  type ReaderEvent,
} from '../../protocol/container.js';

interface Sealed {
  records: Buffer[];
  cek: Buffer;
  wrapKeys: Buffer[];
  core: HeaderCore;
  plain: Buffer;
}

function makeItem(
  opts: { size?: number; chunkSize?: number; recipients?: number; aborted?: boolean } = {},
): Sealed {
  const size = opts.size ?? 200_000;
  const chunkSize = opts.chunkSize ?? 64 * 1024;
  const n = opts.recipients ?? 2;
  const itemId = newItemId();
  const cek = newContentKey();
  const wrapKeys = Array.from({ length: n }, () => randomBytes(32));
  const core: HeaderCore = {
    itemId,
    kind: 'clip',
    flags: 0,
    deviceId: 'dev-0123456789abcdef',
    startedAt: 1_790_000_000_000,
    codec: 'video/mp4; codecs="avc1.64001f"',
    chunkSize,
    recipients: wrapKeys.map((_, i) => ({
      groupId: Buffer.from(`group-${i}`),
      epoch: BigInt(10 + i),
      handshake: randomBytes(100 + i),
    })),
  };
  const h = sealHeader(core, cek, wrapKeys);
  const w = new ContainerWriter(cek, itemId, h.digest, chunkSize);
  const plain = randomBytes(size);
  const records = [
    h.record,
    ...w.seal(plain.subarray(0, 70_000)),
    ...w.seal(plain.subarray(70_000)),
  ];
  records.push(
    opts.aborted === true ? w.end('aborted', 1234, 'camera unplugged') : w.end('complete', 4321),
  );
  return { records, cek, wrapKeys, core, plain };
}

function readAll(
  bytes: Buffer,
  wrapKey: Buffer,
  pieces = 1,
): { events: ReaderEvent[]; error?: string; code?: string } {
  const r = new ContainerReader();
  const events: ReaderEvent[] = [];
  const step = Math.ceil(bytes.length / pieces);
  for (let off = 0; off < bytes.length; off += step) {
    const res = r.push(bytes.subarray(off, off + step));
    if (!res.ok) return { events, error: res.reason, code: res.code };
    for (const e of res.value) {
      events.push(e);
      if (e.type === 'header') {
        const k = unwrapContentKey(wrapKey, e.header, 0);
        if (!k.ok) return { events, error: k.reason, code: k.code };
        r.setKey(k.value);
        const more = r.push(new Uint8Array(0));
        if (!more.ok) return { events, error: more.reason, code: more.code };
        events.push(...more.value);
      }
    }
  }
  const fin = r.finish();
  if (!fin.ok) return { events, error: fin.reason, code: fin.code };
  return { events };
}

function plainOf(events: ReaderEvent[]): Buffer {
  return Buffer.concat(events.flatMap((e) => (e.type === 'chunk' ? [e.plaintext] : [])));
}

void t.test('round trip, streamed in pieces, both recipients', async (t) => {
  const item = makeItem();
  const bytes = Buffer.concat(item.records);
  t.ok(bytes.subarray(0, 4).equals(CONTAINER_MAGIC));
  for (const pieces of [1, 7, 997]) {
    const res = readAll(bytes, item.wrapKeys[0]!, pieces);
    t.equal(res.error, undefined, `no error with ${pieces} pieces`);
    t.ok(plainOf(res.events).equals(item.plain), 'plaintext round trips');
    const end = res.events.at(-1);
    t.equal(end?.type, 'end');
    if (end?.type === 'end') {
      t.equal(end.trailer.status, 'complete');
      t.equal(end.trailer.durationMs, 4321);
      t.equal(end.trailer.totalBytes, item.plain.length);
    }
  }
  const h = parseHeader(bytes);
  t.ok(h.ok);
  if (h.ok) {
    t.equal(h.value.header.core.deviceId, 'dev-0123456789abcdef');
    t.equal(h.value.header.core.recipients[1]?.epoch, 11n);
    const k1 = unwrapContentKey(item.wrapKeys[1]!, h.value.header, 1);
    t.ok(k1.ok && k1.value.equals(item.cek), 'second recipient unwraps the same content key');
    const wrongIdx = unwrapContentKey(item.wrapKeys[1]!, h.value.header, 0);
    t.equal(wrongIdx.ok ? '' : wrongIdx.code, 'EHEADER_TAMPERED');
    const none = unwrapContentKey(item.wrapKeys[1]!, h.value.header, 5);
    t.equal(none.ok ? '' : none.code, 'ENOT_RECIPIENT');
  }
});

void t.test('chunks never exceed chunkSize and each write leaves at once', async (t) => {
  const item = makeItem({ chunkSize: 1000, size: 5500 });
  // header + 70_000 clipped to 5500 -> 6 chunks of the first write + end
  const dataRecs = item.records.filter((r) => r[0] === RECORD_TYPE.data);
  t.equal(dataRecs.length, 6);
  for (const r of dataRecs) t.ok(r.length <= RECORD_HEADER_LENGTH + 1000 + 16);
});

void t.test('aborted item carries its reason', async (t) => {
  const item = makeItem({ aborted: true });
  const res = readAll(Buffer.concat(item.records), item.wrapKeys[0]!);
  const end = res.events.at(-1);
  t.ok(
    end?.type === 'end' &&
      end.trailer.status === 'aborted' &&
      end.trailer.reason === 'camera unplugged',
  );
});

void t.test('reordered chunks -> ECHUNK_REORDERED', async (t) => {
  const item = makeItem();
  const recs = [...item.records];
  [recs[1], recs[2]] = [recs[2]!, recs[1]!];
  t.equal(readAll(Buffer.concat(recs), item.wrapKeys[0]!).code, 'ECHUNK_REORDERED');
  // dropping a middle chunk is also a reorder (index gap)
  const dropped = [...item.records];
  dropped.splice(2, 1);
  t.equal(readAll(Buffer.concat(dropped), item.wrapKeys[0]!).code, 'ECHUNK_REORDERED');
});

void t.test('truncated item -> EITEM_TRUNCATED', async (t) => {
  const item = makeItem();
  const noEnd = Buffer.concat(item.records.slice(0, -1));
  t.equal(readAll(noEnd, item.wrapKeys[0]!).code, 'EITEM_TRUNCATED');
  const half = Buffer.concat(item.records).subarray(0, 30_000);
  t.equal(readAll(half, item.wrapKeys[0]!).code, 'EITEM_TRUNCATED');
  // an end record re-labelled as data is not a valid end (final flag in AAD)
  const recs = item.records.map((r) => Buffer.from(r));
  recs[recs.length - 2]![0] = RECORD_TYPE.end;
  t.equal(readAll(Buffer.concat(recs.slice(0, -1)), item.wrapKeys[0]!).code, 'ECHUNK_TAMPERED');
});

void t.test(
  'spliced chunk from another item -> ECHUNK_SPLICED, disguised -> ECHUNK_TAMPERED',
  async (t) => {
    const a = makeItem();
    const b = makeItem();
    const recs = [...a.records];
    recs[2] = b.records[2]!;
    t.equal(readAll(Buffer.concat(recs), a.wrapKeys[0]!).code, 'ECHUNK_SPLICED');
    const disguised = Buffer.from(b.records[2]!);
    a.core.itemId.forEach((v, i) => (disguised[1 + i] = v));
    recs[2] = disguised;
    t.equal(readAll(Buffer.concat(recs), a.wrapKeys[0]!).code, 'ECHUNK_TAMPERED');
  },
);

void t.test('bit flips anywhere are caught', async (t) => {
  const item = makeItem({ size: 3000, chunkSize: 1024 });
  const bytes = Buffer.concat(item.records);
  const headerLen = item.records[0]!.length;
  const codes = new Set<string>();
  const readAs1 = (copy: Buffer): { code?: string } => {
    const h = parseHeader(copy);
    if (!h.ok) return { code: h.code };
    const k = unwrapContentKey(item.wrapKeys[1]!, h.value.header, 1);
    return k.ok ? {} : { code: k.code };
  };
  for (let pos = 0; pos < bytes.length; pos += 7) {
    const copy = Buffer.from(bytes);
    copy[pos] = (copy[pos] ?? 0) ^ 0x01;
    // The other recipient's wrapped key (the last 48 header bytes) is only
    // authenticated by its own recipient: read as recipient 1 there.
    const otherWrap = pos >= headerLen - 48 && pos < headerLen;
    const res = otherWrap ? readAs1(copy) : readAll(copy, item.wrapKeys[0]!);
    if (res.code === undefined) {
      t.fail(`flip at ${pos} went undetected`);
      continue;
    }
    codes.add(res.code);
    if (pos >= headerLen + RECORD_HEADER_LENGTH && pos < headerLen + item.records[1]!.length) {
      t.equal(res.code, 'ECHUNK_TAMPERED', `flip in the first chunk body at ${pos}`);
    }
  }
  t.ok(codes.has('EHEADER_TAMPERED'), 'header flips fail the unwrap');
  t.ok(codes.has('ECHUNK_TAMPERED'));
  t.ok(codes.has('ECONTAINER_FORMAT'));
});

void t.test('trailing bytes after the end -> ETRAILING_DATA', async (t) => {
  const item = makeItem({ size: 10 });
  const res = readAll(Buffer.concat([...item.records, Buffer.from([1, 2, 3])]), item.wrapKeys[0]!);
  t.equal(res.code, 'ETRAILING_DATA');
});

void t.test('bad preamble and header core decoding return results', async (t) => {
  const r = new ContainerReader();
  const res = r.push(Buffer.from('NOPE!xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'));
  t.equal(res.ok ? '' : res.code, 'ECONTAINER_FORMAT');
  t.equal(r.push(Buffer.alloc(0)).ok, false, 'poisoned reader stays failed');
  const item = makeItem({ size: 10 });
  const core = encodeHeaderCore(item.core);
  const back = decodeHeaderCore(core);
  t.ok(back.ok);
  if (back.ok) t.equal(back.value.codec, item.core.codec);
  for (let cut = 0; cut < core.length; cut += 13)
    t.notOk(decodeHeaderCore(core.subarray(0, cut)).ok, `cut at ${cut}`);
  const badKind = Buffer.from(core);
  badKind[16] = 9;
  t.notOk(decodeHeaderCore(badKind).ok);
  t.throws(() => encodeHeaderCore({ ...item.core, itemId: Buffer.alloc(3) }));
  t.throws(() => encodeHeaderCore({ ...item.core, chunkSize: 0 }));
});

void t.test('seek by chunk', async (t) => {
  const item = makeItem({ size: 300_000 });
  const bytes = Buffer.concat(item.records);
  const idx = indexRecords(bytes);
  t.ok(idx.ok);
  if (!idx.ok) return;
  const data = idx.value.records.filter((r) => r.type === RECORD_TYPE.data);
  t.equal(idx.value.records.at(-1)?.type, RECORD_TYPE.end);
  // open chunk 3 alone
  const third = openChunkAt(bytes, idx.value.header, item.cek, data[3]!, 3);
  t.ok(third.ok);
  if (third.ok) {
    // first write was 70_000 bytes: chunks 0 (65536) and 1 (4464), then the rest from 70_000
    t.ok(third.value.equals(item.plain.subarray(70_000 + 65536, 70_000 + 2 * 65536)));
  }
  const wrong = openChunkAt(bytes, idx.value.header, item.cek, data[3]!, 2);
  t.equal(wrong.ok ? '' : wrong.code, 'ECHUNK_REORDERED');
  // a prefix indexes only complete records
  const prefix = indexRecords(bytes.subarray(0, 100_000));
  t.ok(prefix.ok && prefix.value.records.length === 2);
  t.equal(
    (() => {
      const r = indexRecords(bytes.subarray(0, 10));
      return r.ok ? '' : r.code;
    })(),
    'EITEM_TRUNCATED',
  );
});

void t.test('writer refuses data after end', async (t) => {
  const itemId = newItemId();
  const w = new ContainerWriter(newContentKey(), itemId, Buffer.alloc(32), 1024);
  w.end('complete', 0);
  t.ok(w.ended);
  t.throws(() => w.seal(Buffer.from('x')));
  t.throws(() => w.end('complete', 0));
});

// ---- frozen byte vectors (test/vectors/container-v1.json) -----------------------------
// Generated once from this implementation and checked by hand against docs/protocol.md
// section 4. A format change must fail here; never regenerate the file to make it pass.

interface ContainerVector {
  inputs: {
    itemId: string;
    contentKey: string;
    wrapKeys: string[];
    core: {
      kind: HeaderCore['kind'];
      flags: number;
      deviceId: string;
      startedAt: number;
      codec: string;
      chunkSize: number;
      recipients: { groupId: string; epoch: string; handshake: string }[];
    };
    payload: string;
    end: { status: 'complete' | 'aborted'; durationMs: number; reason: string };
  };
  bytes: {
    headerCore: string;
    digest: string;
    headerRecord: string;
    dataRecords: string[];
    endRecord: string;
  };
}

const vector = JSON.parse(
  readFileSync(new URL('../vectors/container-v1.json', import.meta.url), 'utf8'),
) as ContainerVector;
const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const vin = vector.inputs;
const vectorCore: HeaderCore = {
  ...vin.core,
  itemId: hex(vin.itemId),
  recipients: vin.core.recipients.map((r) => ({
    groupId: hex(r.groupId),
    epoch: BigInt(r.epoch),
    handshake: hex(r.handshake),
  })),
};
const vectorBytes = Buffer.concat([
  hex(vector.bytes.headerRecord),
  ...vector.bytes.dataRecords.map(hex),
  hex(vector.bytes.endRecord),
]);

void t.test('vector: known inputs encode to exactly the frozen bytes', async (t) => {
  t.equal(encodeHeaderCore(vectorCore).toString('hex'), vector.bytes.headerCore, 'header core');
  // The randomness of an item (its id and content key) comes from an injected source.
  const fixed = [hex(vin.itemId), hex(vin.contentKey)];
  const random = (n: number): Uint8Array => {
    const next = fixed.shift() ?? Buffer.alloc(0);
    t.equal(next.length, n, 'asked for as many bytes as the vector holds');
    return next;
  };
  const itemId = newItemId(random);
  const cek = newContentKey(random);
  t.equal(itemId.toString('hex'), vin.itemId);
  const wrapKeys = vin.wrapKeys.map(hex);
  const h = sealHeader({ ...vectorCore, itemId }, cek, wrapKeys);
  t.equal(h.digest.toString('hex'), vector.bytes.digest, 'digest');
  t.equal(h.record.toString('hex'), vector.bytes.headerRecord, 'preamble + header record');
  const w = new ContainerWriter(cek, itemId, h.digest, vin.core.chunkSize);
  t.same(
    w.seal(hex(vin.payload)).map((r) => r.toString('hex')),
    vector.bytes.dataRecords,
    'data records',
  );
  t.equal(
    w.end(vin.end.status, vin.end.durationMs, vin.end.reason).toString('hex'),
    vector.bytes.endRecord,
    'end record',
  );
});

void t.test('vector: sealParts writes the same frozen bytes as parts (no assembly)', async (t) => {
  const cek = hex(vin.contentKey);
  const itemId = hex(vin.itemId);
  const h = sealHeader({ ...vectorCore, itemId }, cek, vin.wrapKeys.map(hex));
  const w = new ContainerWriter(cek, itemId, h.digest, vin.core.chunkSize);
  const parts = w.sealParts(hex(vin.payload));
  t.equal(parts.length, 3 * vector.bytes.dataRecords.length, 'header, ciphertext, tag per record');
  t.equal(
    Buffer.concat(parts).toString('hex'),
    vector.bytes.dataRecords.join(''),
    'parts concatenate to the frozen data records',
  );
  t.same(w.sealRecords(new Uint8Array(0)), [], 'no record for no bytes');
});

void t.test(
  'reader: reads whole records in place but keeps no view of the caller bytes',
  async (t) => {
    const r = new ContainerReader();
    const bytes = Buffer.from(vectorBytes); // the caller's buffer, reused below
    const cut = bytes.length - 7; // the end record stays incomplete
    const first = r.push(bytes.subarray(0, cut));
    if (!first.ok) throw containerError(first);
    t.equal(first.value.length, 1, 'header; the data records wait for the key');
    bytes.fill(0, 0, cut); // the caller reuses its buffer
    r.setKey(hex(vin.contentKey));
    const rest = r.push(Buffer.from(vectorBytes.subarray(cut)));
    if (!rest.ok) throw containerError(rest);
    t.equal(plainOf(rest.value).toString('hex'), vin.payload, 'the retained records were copied');
    t.ok(r.finish().ok);
  },
);

void t.test('vector: the frozen bytes decode to the known fields', async (t) => {
  const r = new ContainerReader();
  const first = r.push(vectorBytes);
  t.ok(first.ok);
  const headerEvent = first.ok ? first.value[0] : undefined;
  t.equal(first.ok ? first.value.length : -1, 1, 'only the header before the key is set');
  if (headerEvent?.type !== 'header') throw new Error('no header event');
  const header = headerEvent.header;
  t.same(header.core, vectorCore, 'header core fields');
  t.equal(Buffer.from(header.digest).toString('hex'), vector.bytes.digest);
  vin.wrapKeys.forEach((k, i) => {
    const cek = unwrapContentKey(hex(k), header, i);
    t.equal(
      cek.ok ? cek.value.toString('hex') : 'failed',
      vin.contentKey,
      `recipient ${i} unwraps`,
    );
  });
  r.setKey(hex(vin.contentKey));
  const rest = r.push(new Uint8Array(0));
  if (!rest.ok) throw containerError(rest);
  t.same(
    rest.value.map((e) => e.type),
    ['chunk', 'chunk', 'end'],
  );
  t.equal(plainOf(rest.value).toString('hex'), vin.payload, 'payload');
  const fin = r.finish();
  t.same(fin.ok ? fin.value : undefined, {
    ...vin.end,
    chunkCount: vector.bytes.dataRecords.length,
    totalBytes: hex(vin.payload).length,
  });
});

void t.test(
  'vector: the frozen bytes follow docs/protocol.md section 4 field by field',
  async (t) => {
    // Read with the spec in hand and node:crypto only, not with the module under test.
    const b = vectorBytes;
    t.equal(b.subarray(0, 5).toString('hex'), '56474c4301', 'preamble "VGLC" | version 1');
    const records: { type: number; itemId: string; index: number; body: Buffer }[] = [];
    for (let off = 5; off < b.length;) {
      const length = b.readUInt32BE(off + 21);
      records.push({
        type: b[off] ?? -1,
        itemId: b.subarray(off + 1, off + 17).toString('hex'),
        index: b.readUInt32BE(off + 17),
        body: b.subarray(off + 25, off + 25 + length),
      });
      off += 25 + length;
    }
    t.same(
      records.map((r) => [r.type, r.itemId, r.index]),
      [
        [1, vin.itemId, 0],
        [2, vin.itemId, 0],
        [2, vin.itemId, 1],
        [3, vin.itemId, 2],
      ],
      'type | itemId | index per record',
    );
    const headerBody = records[0]?.body ?? Buffer.alloc(0);
    const coreLength = headerBody.readUInt32BE(0);
    const core = headerBody.subarray(4, 4 + coreLength);
    t.equal(core.toString('hex'), vector.bytes.headerCore);
    let p = 0;
    const take = (n: number): Buffer => core.subarray(p, (p += n));
    t.equal(take(16).toString('hex'), vin.itemId, 'core itemId');
    t.equal(take(1)[0], 1, 'kind clip = 1');
    t.equal(take(1)[0], 0, 'flags');
    t.equal(take(take(1)[0] ?? 0).toString('utf8'), vin.core.deviceId, 'deviceId');
    t.equal(Number(take(8).readBigUInt64BE()), vin.core.startedAt, 'startedAt u64');
    t.equal(take(take(2).readUInt16BE()).toString('utf8'), vin.core.codec, 'codec');
    t.equal(take(4).readUInt32BE(), vin.core.chunkSize, 'chunkSize u32');
    t.equal(take(1)[0], vin.core.recipients.length, 'recipientCount');
    for (const rec of vin.core.recipients) {
      t.equal(take(take(1)[0] ?? 0).toString('hex'), rec.groupId, 'groupId');
      t.equal(take(8).readBigUInt64BE().toString(), rec.epoch, 'epoch u64');
      t.equal(take(take(4).readUInt32BE()).toString('hex'), rec.handshake, 'handshake');
    }
    t.equal(p, core.length, 'nothing else in the core');
    const digest = createHash('sha256').update('vigil-container-v1').update(core).digest();
    t.equal(digest.toString('hex'), vector.bytes.digest, 'digest = SHA-256(label || core)');
    const wrapCount = headerBody[4 + coreLength];
    t.equal(wrapCount, vin.wrapKeys.length);
    t.equal(headerBody.length, 4 + coreLength + 1 + 48 * vin.wrapKeys.length);
    const open = (key: Buffer, nonce: Buffer, aad: Buffer, sealed: Buffer): Buffer => {
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAAD(aad, { plaintextLength: sealed.length - 16 });
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
    };
    vin.wrapKeys.forEach((k, i) => {
      const off = 4 + coreLength + 1 + 48 * i;
      const aad = Buffer.concat([Buffer.from('vigil-wrap-v1'), digest, Buffer.from([i])]);
      const cek = open(hex(k), Buffer.alloc(12), aad, headerBody.subarray(off, off + 48));
      t.equal(cek.toString('hex'), vin.contentKey, `wrappedKey ${i}`);
    });
    const cek = hex(vin.contentKey);
    const plain = records.slice(1).map((r) => {
      const n = Buffer.alloc(4);
      n.writeUInt32BE(r.index);
      const nonce = Buffer.concat([Buffer.alloc(8), n]);
      const final = Buffer.from([r.type === 3 ? 1 : 0]);
      const aad = Buffer.concat([Buffer.from('vigil-chunk-v1'), hex(vin.itemId), n, final, digest]);
      return open(cek, nonce, aad, r.body);
    });
    t.equal(Buffer.concat(plain.slice(0, -1)).toString('hex'), vin.payload, 'data plaintext');
    const trailer = plain.at(-1) ?? Buffer.alloc(0);
    const reason = Buffer.from(vin.end.reason);
    t.equal(trailer.length, 23 + reason.length, 'trailer is 23 bytes + reason');
    t.equal(trailer[0], vin.end.status === 'complete' ? 0 : 1, 'status');
    t.equal(Number(trailer.readBigUInt64BE(1)), vin.end.durationMs, 'durationMs u64');
    t.equal(trailer.readUInt32BE(9), vector.bytes.dataRecords.length, 'chunkCount u32');
    t.equal(Number(trailer.readBigUInt64BE(13)), hex(vin.payload).length, 'totalBytes u64');
    t.equal(trailer.readUInt16BE(21), reason.length, 'reasonLength u16');
    t.equal(trailer.subarray(23).toString('utf8'), vin.end.reason, 'reason');
  },
);

void t.test('a random source that gives the wrong number of bytes is refused', async (t) => {
  t.throws(() => newItemId(() => new Uint8Array(15)), { code: 'ECONTAINER_FORMAT' });
  t.equal(newContentKey().length, 32, 'node:crypto by default');
});
