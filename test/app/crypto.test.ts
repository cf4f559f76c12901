import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  StaticKeyCrypto,
  openItem,
  openStoredItem,
  streamItem,
  verifyItem,
} from '../../app/crypto.js';
import {
  PREAMBLE_LENGTH,
  RECORD_HEADER_LENGTH,
  indexRecords,
  parseHeader,
} from '../../protocol/container.js';
import { MemorySink } from '../../dev/fixtures/paired-hub.js';
import { StaticKeySealer, sealWhole } from './fixtures.js';

const CHUNK = 16 * 1024;

/** One item sealed with the static key: 5 writes of uneven size, 16 KiB chunks. */
async function sealed(payload: Buffer): Promise<{ crypto: StaticKeyCrypto; bytes: Buffer }> {
  const key = randomBytes(32);
  const sink = new MemorySink();
  const id = await sealWhole(
    new StaticKeySealer(key, sink),
    { kind: 'clip', startedAt: Date.UTC(2026, 11, 7), codec: 'video/mp4' },
    payload,
    5,
    5000,
  );
  return { crypto: new StaticKeyCrypto(key), bytes: sink.bytes(id) };
}

/** Offsets of the records after the header (data records, then the end record). */
function recordOffsets(bytes: Buffer): number[] {
  const ix = indexRecords(bytes);
  if (!ix.ok) throw new Error(ix.reason);
  return ix.value.records.map((r) => r.offset);
}

function flipped(bytes: Buffer, at: number): Buffer {
  const b = Buffer.from(bytes);
  b[at] = (b[at] ?? 0) ^ 0x40;
  return b;
}

const payload = randomBytes(200_000);

t.test('streamItem: every chunk handed out in order as it opens, nothing joined', async (t) => {
  const { crypto, bytes } = await sealed(payload);
  const chunks: Buffer[] = [];
  const { summary, trailer } = await streamItem(crypto, bytes, (p) => {
    t.ok(p.length <= CHUNK, 'one chunk at a time');
    chunks.push(Buffer.from(p));
  });
  t.ok(chunks.length > 10);
  t.same(Buffer.concat(chunks), payload, 'the chunks are the payload');
  t.equal(trailer.status, 'complete');
  t.equal(trailer.durationMs, 5000);
  t.equal(summary.codec, 'video/mp4');
  t.same((await openItem(crypto, bytes)).plaintext, payload, 'openItem joins the same bytes');
  t.equal((await verifyItem(crypto, bytes)).plaintextBytes, payload.length);
  // an async consumer (a file being written) is awaited chunk by chunk
  let inFlight = 0;
  await streamItem(crypto, bytes, async () => {
    inFlight++;
    t.equal(inFlight, 1, 'the next chunk waits for the consumer');
    await Promise.resolve();
    inFlight--;
  });
});

t.test(
  'streamItem: a tampered or missing record rejects; the good clip is never completed',
  async (t) => {
    const { crypto, bytes } = await sealed(payload);
    const offs = recordOffsets(bytes);
    const mid = offs[5] as number;
    let seen = 0;
    await t.rejects(
      streamItem(crypto, flipped(bytes, mid + RECORD_HEADER_LENGTH + 100), () => {
        seen++;
      }),
      { code: 'ECHUNK_TAMPERED', message: /chunk 5 failed authentication/ },
    );
    t.equal(seen, 5, 'the chunks before the tampered one were handed out, then it stopped');
    const endAt = offs.at(-1) as number;
    await t.rejects(
      streamItem(crypto, bytes.subarray(0, endAt), () => undefined),
      {
        code: 'EITEM_TRUNCATED',
        message: /no end record/,
      },
    );
    await t.rejects(
      streamItem(crypto, bytes.subarray(0, mid + 40), () => undefined),
      {
        code: 'EITEM_TRUNCATED',
      },
    );
    await t.rejects(openItem(crypto, bytes.subarray(0, endAt)), { code: 'EITEM_TRUNCATED' });
    await t.rejects(verifyItem(crypto, flipped(bytes, mid + RECORD_HEADER_LENGTH)), {
      code: 'ECHUNK_TAMPERED',
    });
    // a record dropped from the middle
    const dropped = Buffer.concat([bytes.subarray(0, mid), bytes.subarray(offs[6])]);
    await t.rejects(
      streamItem(crypto, dropped, () => undefined),
      { code: 'ECHUNK_REORDERED' },
    );
    await t.rejects(
      streamItem(crypto, Buffer.concat([bytes, Buffer.from([1])]), () => undefined),
      {
        code: 'ETRAILING_DATA',
      },
    );
    const ph = parseHeader(bytes);
    t.ok(ph.ok);
    await t.rejects(
      streamItem(new StaticKeyCrypto(randomBytes(32)), bytes, () => undefined),
      { code: 'ENOKEY' },
      'a header this phone cannot open',
    );
    // a consumer that fails stops the stream with its error
    await t.rejects(
      streamItem(crypto, bytes, () => {
        throw new Error('disk full');
      }),
      /disk full/,
    );
  },
);

t.test('openStoredItem: ranges decrypt only their chunks and equal the plaintext', async (t) => {
  const { crypto, bytes } = await sealed(payload);
  const item = await openStoredItem(crypto, bytes);
  t.equal(item.size, payload.length);
  t.equal(item.trailer.chunkCount, recordOffsets(bytes).length - 1);
  const read = (a: number, b: number): Buffer => Buffer.concat([...item.read(a, b)]);
  t.same(read(0, payload.length - 1), payload, 'whole');
  for (const [a, b] of [
    [0, 0],
    [0, 99],
    [CHUNK - 1, CHUNK],
    [CHUNK, 2 * CHUNK - 1],
    [12_345, 150_001],
    [payload.length - 1, payload.length - 1],
    [39_999, 40_000], // 40,000-byte writes: chunks of 16384, 16384, 7232, ...
  ] as const)
    t.same(read(a, b), payload.subarray(a, b + 1), `bytes ${a}-${b}`);
  t.same([...item.read(10, 9)], [], 'an empty range reads nothing');
  t.equal([...item.read(0, 99)].length, 1, 'one chunk opened for the first 100 bytes');
});

t.test(
  'openStoredItem: a truncated item is refused before any byte; a tampered chunk where it is read',
  async (t) => {
    const { crypto, bytes } = await sealed(payload);
    const offs = recordOffsets(bytes);
    const endAt = offs.at(-1) as number;
    await t.rejects(openStoredItem(crypto, bytes.subarray(0, endAt)), {
      code: 'EITEM_TRUNCATED',
      message: /no end record/,
    });
    await t.rejects(openStoredItem(crypto, bytes.subarray(0, endAt + 10)), {
      code: 'EITEM_TRUNCATED',
    });
    // the end record of this item placed after fewer chunks: its counts do not match
    const short = Buffer.concat([bytes.subarray(0, offs[3]), bytes.subarray(endAt)]);
    await t.rejects(openStoredItem(crypto, short), { code: /ECHUNK_REORDERED|EITEM_TRUNCATED/ });
    await t.rejects(openStoredItem(crypto, Buffer.concat([bytes, Buffer.alloc(3)])), {
      code: 'ETRAILING_DATA',
    });
    await t.rejects(openStoredItem(crypto, flipped(bytes, endAt + RECORD_HEADER_LENGTH + 2)), {
      code: 'ECHUNK_TAMPERED',
    });
    await t.rejects(
      openStoredItem(crypto, flipped(bytes, PREAMBLE_LENGTH + RECORD_HEADER_LENGTH + 8)),
      {
        code: /EHEADER_TAMPERED|ECONTAINER_FORMAT|ENOKEY/,
      },
    );
    const bad = await openStoredItem(
      crypto,
      flipped(bytes, (offs[4] as number) + RECORD_HEADER_LENGTH + 7),
    );
    const it = bad.read(0, payload.length - 1);
    for (let i = 0; i < 4; i++) t.notOk(it.next().done, `chunk ${i} opens`);
    t.throws(
      () => it.next(),
      { code: 'ECHUNK_TAMPERED' },
      'the tampered chunk throws when reached',
    );
    // writes of 40,000 bytes in 16 KiB chunks: chunk 4 begins at 40,000 + 16,384
    t.same(
      Buffer.concat([...bad.read(0, 56_383)]),
      payload.subarray(0, 56_384),
      'ranges before it still read',
    );
    t.throws(() => [...bad.read(0, 56_384)], { code: 'ECHUNK_TAMPERED' });
  },
);
