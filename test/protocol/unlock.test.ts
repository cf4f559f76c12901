import t from 'tap';
import { randomBytes } from 'node:crypto';
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';
import {
  CHALLENGE_TTL_MS,
  b64u,
  decodeRecoveryMessage,
  decodeUnlockKeyEscrow,
  encodeRecoveryMessage,
  encodeUnlockKeyEscrow,
  generateEd25519,
  generateX25519,
  hpkeOpen,
  hpkeSeal,
  openAnswer,
  sealAnswer,
  signChallenge,
  signStatus,
  unlockMessageType,
  verifyChallenge,
  verifyStatus,
} from '../../protocol/unlock.js';
import type { UnlockChallenge } from '../../protocol/unlock.js';

const suite = () =>
  new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Chacha20Poly1305(),
  });
const ab = (b: Uint8Array): ArrayBuffer => new Uint8Array(b).buffer;

void t.test(
  'HPKE: node:crypto implementation interoperates with @hpke/core both ways',
  async (t) => {
    const s = suite();
    const info = Buffer.from('info');
    const aad = Buffer.from('aad');
    const pt = randomBytes(77);

    // ours -> reference
    const r = generateX25519();
    const { enc, ct } = hpkeSeal(r.publicKey, info, aad, pt);
    const recipientKey = await s.kem.importKey('raw', ab(r.privateKey), false);
    const ctxR = await s.createRecipientContext({ recipientKey, enc: ab(enc), info: ab(info) });
    t.same(Buffer.from(await ctxR.open(ab(ct), ab(aad))), pt, 'reference opens ours');

    // reference -> ours
    const pk = await s.kem.importKey('raw', ab(r.publicKey), true);
    const sender = await s.createSenderContext({ recipientPublicKey: pk, info: ab(info) });
    const ct2 = await sender.seal(ab(pt), ab(aad));
    t.same(
      hpkeOpen(r, Buffer.from(sender.enc), info, aad, Buffer.from(ct2)),
      pt,
      'ours opens reference',
    );

    // wrong aad / info / key
    t.throws(() => hpkeOpen(r, enc, info, Buffer.from('other'), ct), { code: 'EUNLOCK_OPEN' });
    t.throws(() => hpkeOpen(r, enc, Buffer.from('x'), aad, ct), { code: 'EUNLOCK_OPEN' });
    t.throws(() => hpkeOpen(generateX25519(), enc, info, aad, ct), { code: 'EUNLOCK_OPEN' });
  },
);

function challenge(
  sign = generateEd25519(),
  over: Partial<Omit<UnlockChallenge, 'sig'>> = {},
): { c: UnlockChallenge; sign: ReturnType<typeof generateEd25519> } {
  const now = Date.now();
  return {
    sign,
    c: signChallenge(
      {
        v: 1,
        t: 'unlock-challenge',
        deviceId: 'hub-0001',
        luksUuid: '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e',
        nonce: b64u(randomBytes(32)),
        reason: 'wrong-key: the OTP key does not open the volume',
        issuedAt: now,
        expiresAt: now + CHALLENGE_TTL_MS,
        ...over,
      },
      sign,
    ),
  };
}

void t.test('challenge: signature, device and expiry are checked by the phone', async (t) => {
  const { c, sign } = challenge();
  const bytes = Buffer.from(JSON.stringify(c));
  t.equal(unlockMessageType(bytes), 'unlock-challenge');
  const ok = verifyChallenge(bytes, {
    deviceId: 'hub-0001',
    signPublicKey: sign.publicKey,
    now: Date.now(),
  });
  t.equal(ok.nonce, c.nonce);
  t.throws(
    () =>
      verifyChallenge(bytes, {
        deviceId: 'hub-0001',
        signPublicKey: generateEd25519().publicKey,
        now: Date.now(),
      }),
    { code: 'EUNLOCK_SIGNATURE' },
    'another key: refused',
  );
  const forged = Buffer.from(JSON.stringify({ ...c, reason: 'please approve' }));
  t.throws(
    () => verifyChallenge(forged, { deviceId: 'hub-0001', signPublicKey: sign.publicKey, now: 0 }),
    { code: 'EUNLOCK_SIGNATURE' },
    'altered reason: refused',
  );
  t.throws(
    () => verifyChallenge(bytes, { deviceId: 'hub-9999', signPublicKey: sign.publicKey, now: 0 }),
    { code: 'EUNLOCK_DEVICE' },
  );
  t.throws(
    () =>
      verifyChallenge(bytes, {
        deviceId: 'hub-0001',
        signPublicKey: sign.publicKey,
        now: c.expiresAt,
      }),
    { code: 'EUNLOCK_EXPIRED' },
  );
  t.throws(
    () =>
      verifyChallenge(Buffer.from('{"t":"unlock-challenge"}'), {
        deviceId: 'x',
        signPublicKey: sign.publicKey,
        now: 0,
      }),
    { code: 'EUNLOCK_FORMAT' },
  );
  const st = signStatus(
    {
      v: 1,
      t: 'unlock-status',
      deviceId: 'hub-0001',
      nonce: c.nonce,
      answer: '',
      state: 'unlocked',
      detail: '',
      at: 1,
    },
    sign,
  );
  const sb = Buffer.from(JSON.stringify(st));
  t.equal(unlockMessageType(sb), 'unlock-status');
  t.equal(
    verifyStatus(sb, { deviceId: 'hub-0001', signPublicKey: sign.publicKey }).state,
    'unlocked',
  );
  t.throws(
    () =>
      verifyStatus(Buffer.from(JSON.stringify({ ...st, state: 'refused' })), {
        deviceId: 'hub-0001',
        signPublicKey: sign.publicKey,
      }),
    { code: 'EUNLOCK_SIGNATURE' },
  );
});

void t.test(
  'answer: opens only for the outstanding challenge, with the right hub key',
  async (t) => {
    const hub = generateX25519();
    const key = randomBytes(32);
    const { c } = challenge();
    const answer = sealAnswer(c, key, hub.publicKey);
    t.same(Buffer.from(openAnswer(answer, c, hub)), key, 'opens');
    t.notOk(Buffer.from(answer).includes(key.toString('base64url')), 'key not in clear');

    const { c: fresh } = challenge();
    t.throws(
      () => openAnswer(answer, fresh, hub),
      { code: 'EUNLOCK_STALE' },
      'replay against a new challenge',
    );
    t.throws(
      () => openAnswer(answer, undefined, hub),
      { code: 'EUNLOCK_STALE' },
      'no challenge outstanding',
    );
    t.throws(
      () => openAnswer(answer, c, generateX25519()),
      { code: 'EUNLOCK_OPEN' },
      'other hub key',
    );
    t.throws(() => openAnswer(answer, { ...c, luksUuid: 'ffffffff-0000' }, hub), {
      code: 'EUNLOCK_DEVICE',
    });
    // Swap in another nonce in the header: aad and info no longer match.
    const a = JSON.parse(Buffer.from(answer).toString('utf8')) as Record<string, string>;
    const moved = Buffer.from(JSON.stringify({ ...a, nonce: fresh.nonce }));
    t.throws(
      () => openAnswer(moved, fresh, hub),
      { code: 'EUNLOCK_OPEN' },
      'nonce moved to a new challenge',
    );
    const flipped = Buffer.from(a.ct ?? '', 'base64url');
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    t.throws(
      () => openAnswer(Buffer.from(JSON.stringify({ ...a, ct: b64u(flipped) })), c, hub),
      { code: 'EUNLOCK_OPEN' },
      'altered ciphertext',
    );
    t.throws(() => openAnswer(Buffer.from('nope'), c, hub), { code: 'EUNLOCK_FORMAT' });
    t.throws(() => sealAnswer(c, randomBytes(16), hub.publicKey), { code: 'EUNLOCK_KEY' });
  },
);

void t.test('escrow messages round-trip and reject malformed input', async (t) => {
  const e = {
    v: 1 as const,
    deviceId: 'hub-0001',
    luksUuid: '0b0e6f7e-3c8c-4a4e-9d7e-1f2a3b4c5d6e',
    phoneKey: b64u(randomBytes(32)),
    unlockPublicKey: b64u(randomBytes(32)),
    signPublicKey: b64u(randomBytes(32)),
  };
  t.same(decodeUnlockKeyEscrow(encodeUnlockKeyEscrow(e)), e);
  t.throws(() => decodeUnlockKeyEscrow(Buffer.from(JSON.stringify({ ...e, phoneKey: 'short' }))), {
    code: 'EUNLOCK_FORMAT',
  });
  const data = randomBytes(1000);
  const m = decodeRecoveryMessage(
    encodeRecoveryMessage({ v: 1, t: 'chunk', id: 'ab'.repeat(16), index: 3 }, data),
  );
  t.equal(m.t, 'chunk');
  if (m.t === 'chunk') {
    t.equal(m.head.index, 3);
    t.same(Buffer.from(m.data), data);
  }
  t.throws(() => decodeRecoveryMessage(Buffer.from([0, 50, 1])), { code: 'EUNLOCK_FORMAT' });
  t.throws(
    () => decodeRecoveryMessage(encodeRecoveryMessage({ v: 1, t: 'chunk', id: 'zz', index: 0 })),
    { code: 'EUNLOCK_FORMAT' },
  );
});
