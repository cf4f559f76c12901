import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  CONTAINER_MAGIC,
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
    if (!res.ok) return { events, error: res.error.message, code: res.error.code };
    for (const e of res.value) {
      events.push(e);
      if (e.type === 'header') {
        const k = unwrapContentKey(wrapKey, e.header, 0);
        if (!k.ok) return { events, error: k.error.message, code: k.error.code };
        r.setKey(k.value);
        const more = r.push(new Uint8Array(0));
        if (!more.ok) return { events, error: more.error.message, code: more.error.code };
        events.push(...more.value);
      }
    }
  }
  const fin = r.finish();
  if (!fin.ok) return { events, error: fin.error.message, code: fin.error.code };
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
    t.equal(wrongIdx.ok ? '' : wrongIdx.error.code, 'EHEADER_TAMPERED');
    const none = unwrapContentKey(item.wrapKeys[1]!, h.value.header, 5);
    t.equal(none.ok ? '' : none.error.code, 'ENOT_RECIPIENT');
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
    if (!h.ok) return { code: h.error.code };
    const k = unwrapContentKey(item.wrapKeys[1]!, h.value.header, 1);
    return k.ok ? {} : { code: k.error.code };
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
  t.equal(res.ok ? '' : res.error.code, 'ECONTAINER_FORMAT');
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
  t.equal(wrong.ok ? '' : wrong.error.code, 'ECHUNK_REORDERED');
  // a prefix indexes only complete records
  const prefix = indexRecords(bytes.subarray(0, 100_000));
  t.ok(prefix.ok && prefix.value.records.length === 2);
  t.equal(
    (() => {
      const r = indexRecords(bytes.subarray(0, 10));
      return r.ok ? '' : r.error.code;
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
