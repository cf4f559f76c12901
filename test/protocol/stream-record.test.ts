import t from 'tap';
import {
  decodeStreamRecord,
  encodeStreamRecord,
  isStreamRecord,
  STREAM_MIN_RECORD_BYTES,
  type Fragment,
} from '../../protocol/stream-record.js';

t.test('a cover record: header and zero padding, no fragment', (t) => {
  const r = encodeStreamRecord([], 256);
  t.equal(r.length, 256);
  t.equal(Buffer.from(r.subarray(0, 7)).toString('hex'), '5647535201' + '0000');
  t.ok(Buffer.from(r.subarray(7)).equals(Buffer.alloc(249)), 'zero padding');
  t.ok(isStreamRecord(r));
  t.same(decodeStreamRecord(r), { ok: true, value: [] });
  t.end();
});

t.test('fragments round-trip at a fixed length, byte layout as documented', (t) => {
  const frags: Fragment[] = [
    { kind: 'thumbnail', id: 'ab', offset: 7, final: true, bytes: Buffer.from([1, 2, 3]) },
    { kind: 'clip', id: 'c0ffee', offset: 65536, final: false, bytes: Buffer.from('xyz') },
    { kind: 'notice', id: 'n1', offset: 0, final: true, bytes: Buffer.from('{"t":"notice"}') },
  ];
  const r = encodeStreamRecord(frags, 512);
  t.equal(r.length, 512, 'always the record size');
  // the first fragment, field by field (docs/protocol.md 4.4)
  t.equal(
    Buffer.from(r.subarray(7, 7 + 2 + 2 + 9 + 3)).toString('hex'),
    '02' + '02' + Buffer.from('ab').toString('hex') + '00000007' + '00000003' + '01' + '010203',
  );
  const d = decodeStreamRecord(r);
  if (!d.ok) throw new Error(d.reason);
  t.same(
    d.value.map((f) => ({ ...f, bytes: Buffer.from(f.bytes).toString('hex') })),
    frags.map((f) => ({ ...f, bytes: Buffer.from(f.bytes).toString('hex') })),
  );
  t.end();
});

t.test('the decoder refuses malformed records with a coded one-line reason', (t) => {
  const good = Buffer.from(
    encodeStreamRecord(
      [{ kind: 'clip', id: 'ab', offset: 0, final: false, bytes: Buffer.from('hi') }],
      256,
    ),
  );
  const bad = (mut: (b: Buffer) => void): unknown => {
    const b = Buffer.from(good);
    mut(b);
    return decodeStreamRecord(b);
  };
  t.match(decodeStreamRecord(Buffer.from('{"t":"notice"}')), { ok: false, code: 'ESTREAM_FORMAT' });
  t.notOk(isStreamRecord(Buffer.from('{"t":"notice"}')), 'JSON is never a record');
  t.match(
    bad((b) => b.writeUInt8(2, 4)),
    { ok: false, code: 'ESTREAM_VERSION' },
  );
  t.match(
    bad((b) => b.writeUInt8(9, 7)),
    { ok: false, code: 'ESTREAM_FORMAT', reason: /kind 9/ },
  );
  t.match(
    bad((b) => b.writeUInt32BE(10_000, 7 + 2 + 2 + 4)),
    { ok: false, reason: /runs past the record/ },
  );
  t.match(
    bad((b) => b.writeUInt8(1, 200)),
    { ok: false, reason: /padding is not zero/ },
  );
  t.match(
    bad((b) => b.writeUInt8(2, 7 + 2 + 2 + 8)),
    { ok: false, reason: /final flag 2/ },
  );
  t.match(
    bad((b) => b.writeUInt16BE(5, 5)),
    { ok: false, reason: /fragment 1 has kind 0/ },
  );
  t.end();
});

t.test('the encoder refuses what cannot be a record', (t) => {
  t.throws(() => encodeStreamRecord([], STREAM_MIN_RECORD_BYTES - 1), /record size must be/);
  t.throws(
    () =>
      encodeStreamRecord(
        [{ kind: 'clip', id: 'ab', offset: 0, final: false, bytes: Buffer.alloc(300) }],
        256,
      ),
    /need more than the record's 256 bytes/,
  );
  t.throws(
    () =>
      encodeStreamRecord(
        [{ kind: 'clip', id: 'a b', offset: 0, final: false, bytes: Buffer.alloc(1) }],
        256,
      ),
    /fragment id/,
  );
  t.end();
});
