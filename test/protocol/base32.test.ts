import t from 'tap';
import { randomBytes } from 'node:crypto';
import { base32Decode, base32Encode, base32Length, isBase32 } from '../../protocol/base32.js';

void t.test('RFC 4648 vectors (without padding)', async (t) => {
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ];
  for (const [plain, enc] of vectors) {
    t.equal(base32Encode(Buffer.from(plain)), enc, `encode ${plain}`);
    t.same(Buffer.from(base32Decode(enc) ?? []).toString(), plain, `decode ${enc}`);
  }
});

void t.test('round trip of random lengths; lengths match base32Length', async (t) => {
  for (let n = 0; n < 40; n++) {
    const b = new Uint8Array(randomBytes(n));
    const e = base32Encode(b);
    t.equal(e.length, base32Length(n));
    t.ok(isBase32(e));
    t.same(base32Decode(e), b);
  }
});

void t.test(
  'rejects bad characters, impossible lengths and non-canonical padding bits',
  async (t) => {
    t.equal(base32Decode('MZXW6YT1'), undefined, 'digit 1 is not base32');
    t.equal(base32Decode('mzxw6'), undefined, 'lower case');
    t.equal(base32Decode('M'), undefined, 'length 1 encodes no byte count');
    t.equal(base32Decode('MZ'), undefined, "'Z' leaves non-zero padding bits");
    t.notOk(isBase32('AB=C'));
  },
);
