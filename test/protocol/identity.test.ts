import t from 'tap';
import { createHmac } from 'node:crypto';
import { base32Encode } from '../../protocol/base32.js';
import {
  DEVICE_ID_CHARS,
  deriveIdentity,
  formatDeviceId,
  isDeviceId,
  newIdentity,
  parseDeviceId,
  shortId,
} from '../../protocol/identity.js';
import { ValidationError } from '../../base/errors.js';

const fixed = (fill: number) => (n: number) => new Uint8Array(n).fill(fill);

void t.test('new identity: 80-bit id as 16 base32 chars and a 32-byte secret', async (t) => {
  const a = newIdentity();
  const b = newIdentity();
  t.equal(a.deviceId.length, DEVICE_ID_CHARS);
  t.ok(isDeviceId(a.deviceId));
  t.equal(a.secret.length, 32);
  t.not(a.deviceId, b.deviceId, 'two identities differ');
  t.not(Buffer.from(a.secret).toString('hex'), Buffer.from(b.secret).toString('hex'));
  t.throws(
    () => newIdentity(() => new Uint8Array(3)),
    ValidationError,
    'short random output is refused',
  );
});

void t.test('derivation is deterministic, per purpose and per device', async (t) => {
  const { deviceId, secret } = newIdentity(fixed(7));
  const d1 = deriveIdentity(secret, deviceId);
  const d2 = deriveIdentity(new Uint8Array(secret), deviceId);
  t.same(d1, d2, 'same inputs, same outputs');
  t.equal(d1.ssid, `Vigil-${deviceId.slice(0, 6)}`);
  t.ok(d1.ssid.length <= 32, 'SSID fits 32 bytes');
  t.match(d1.wpaPassphrase, /^[A-Z2-7]{32}$/, '32 base32 characters (160 bits), within WPA2 8..63');
  t.equal(d1.mlsPsk.length, 32);
  t.equal(d1.mlsPskId.length, 16);
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  t.not(hex(d1.mlsPsk).slice(0, 32), hex(d1.mlsPskId), 'PSK and PSK id are independent');
  const otherSecret = new Uint8Array(secret);
  otherSecret[0] = (otherSecret[0] ?? 0) ^ 1;
  const d3 = deriveIdentity(otherSecret, deviceId);
  t.not(d3.wpaPassphrase, d1.wpaPassphrase, 'one bit of secret changes the passphrase');
  t.not(hex(d3.mlsPsk), hex(d1.mlsPsk));
  const otherId = newIdentity(fixed(9)).deviceId;
  t.not(
    deriveIdentity(secret, otherId).wpaPassphrase,
    d1.wpaPassphrase,
    'device id is bound into the derivation',
  );
});

void t.test(
  'matches an independent RFC 5869 HKDF written with HMAC (pins the derivation)',
  async (t) => {
    // HKDF-SHA256 by the RFC: PRK = HMAC(salt, IKM); T(i) = HMAC(PRK, T(i-1) | info | i)
    const hkdf = (ikm: Uint8Array, info: string, len: number): Buffer => {
      const prk = createHmac('sha256', 'vigil/pairing/v1').update(ikm).digest();
      let prev = Buffer.alloc(0);
      const out: Buffer[] = [];
      for (let i = 1; out.reduce((n, b) => n + b.length, 0) < len; i++) {
        prev = createHmac('sha256', prk)
          .update(Buffer.concat([prev, Buffer.from(info), Buffer.from([i])]))
          .digest();
        out.push(prev);
      }
      return Buffer.concat(out).subarray(0, len);
    };
    const secret = new Uint8Array(32).fill(1);
    const id = 'AAAAAAAAAAAAAAAA';
    const d = deriveIdentity(secret, id);
    t.equal(d.ssid, 'Vigil-AAAAAA');
    t.equal(d.wpaPassphrase, base32Encode(hkdf(secret, `wpa2-passphrase|${id}`, 20)));
    t.same(Buffer.from(d.mlsPsk), hkdf(secret, `mls-external-psk|${id}`, 32));
    t.same(Buffer.from(d.mlsPskId), hkdf(secret, `mls-external-psk-id|${id}`, 16));
  },
);

void t.test('input validation', async (t) => {
  t.throws(() => deriveIdentity(new Uint8Array(31), 'AAAAAAAAAAAAAAAA'), ValidationError);
  t.throws(() => deriveIdentity(new Uint8Array(32), 'short'), ValidationError);
  t.throws(() => deriveIdentity(new Uint8Array(32), 'aaaaaaaaaaaaaaaa'), ValidationError);
});

void t.test('device id formatting', async (t) => {
  t.equal(formatDeviceId('ABCDEFGHIJKLMNOP'), 'ABCD-EFGH-IJKL-MNOP');
  t.equal(parseDeviceId('abcd-efgh ijkl-mnop'), 'ABCDEFGHIJKLMNOP');
  t.equal(parseDeviceId('ABCD'), undefined);
  t.equal(shortId('ABCDEFGHIJKLMNOP'), 'ABCDEF');
});
