import t from 'tap';
import QRCode from 'qrcode';
import { newIdentity } from '../../protocol/identity.js';
import {
  QR_PAYLOAD_LENGTH,
  QrPayloadError,
  QrPayloadSchema,
  decodeQrPayload,
  encodeQrPayload,
  parseQrPayload,
} from '../../protocol/qr-payload.js';

void t.test('round trip; alphanumeric mode; version 4 at EC level M', async (t) => {
  for (let i = 0; i < 20; i++) {
    const id = newIdentity();
    const p = encodeQrPayload(id);
    t.equal(p.length, QR_PAYLOAD_LENGTH);
    t.match(p, /^[0-9A-Z $%*+\-./:]+$/, 'only QR alphanumeric characters');
    const back = decodeQrPayload(p);
    t.equal(back.deviceId, id.deviceId);
    t.same(back.secret, id.secret);
    const qr = QRCode.create(p, { errorCorrectionLevel: 'M' });
    t.equal(qr.version, 4);
    t.same(
      qr.segments.map((s) => s.mode.id),
      ['Alphanumeric'],
    );
  }
});

void t.test('tolerates whitespace and lower case typed by hand', async (t) => {
  const id = newIdentity();
  const p = encodeQrPayload(id);
  t.equal(decodeQrPayload(`  ${p.toLowerCase()}\n`).deviceId, id.deviceId);
  t.equal(QrPayloadSchema.parse(p).deviceId, id.deviceId);
});

void t.test('each kind of damage gets its own error code', async (t) => {
  const id = newIdentity();
  const p = encodeQrPayload(id);
  const [head, dev, sec, chk] = p.split(':') as [string, string, string, string];
  const cases: [unknown, string, RegExp][] = [
    ['hello', 'EQR_FORMAT', /not a Vigil pairing code/],
    ['VIGIL', 'EQR_FORMAT', /no version/],
    [`VIGIL2:${dev}:${sec}:${chk}`, 'EQR_VERSION', /version 2 is not supported/],
    [`${head}:${dev}:${sec}`, 'EQR_FORMAT', /4 ':'-separated fields/],
    [`${head}:${dev.slice(1)}:${sec}:${chk}`, 'EQR_DEVICE_ID', /device id/],
    [`${head}:${dev}:${sec.slice(2)}:${chk}`, 'EQR_SECRET', /secret/],
    [`${head}:${dev}:${sec.slice(0, -1)}1:${chk}`, 'EQR_SECRET', /secret/],
    [
      `${head}:${dev}:${sec.slice(0, 10)}${sec[10] === 'A' ? 'B' : 'A'}${sec.slice(11)}:${chk}`,
      'EQR_CHECKSUM',
      /check/,
    ],
    ['VIGIL1:' + 'A'.repeat(1000), 'EQR_FORMAT', /too long/],
    [42, 'EQR_FORMAT', /must be a string/],
  ];
  for (const [input, code, msg] of cases) {
    const r = parseQrPayload(input);
    t.notOk(r.ok, `rejects ${String(input).slice(0, 30)}`);
    if (!r.ok) {
      t.equal(r.code, code);
      t.match(r.reason, msg);
      t.notMatch(r.reason, sec, 'error never echoes the secret');
    }
  }
  t.throws(() => decodeQrPayload('nope'), QrPayloadError);
  t.throws(() => encodeQrPayload({ deviceId: 'x', secret: id.secret }), { code: 'EQR_DEVICE_ID' });
  t.throws(() => encodeQrPayload({ deviceId: id.deviceId, secret: new Uint8Array(3) }), {
    code: 'EQR_SECRET',
  });
});
