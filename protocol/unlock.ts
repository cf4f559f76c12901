/**
 * Phone unlock and recovery escrow: the wire formats shared by the hub
 * (firmware/storage/phone-unlock.ts, escrow.ts) and the companion
 * (app/unlock.ts, app/recovery.ts). Pure apart from node:crypto; no I/O.
 *
 * Two channels:
 *
 *  - **Escrow** travels inside the MLS config group (topics `unlock-key` and
 *    `recovery`) while the hub is unlocked: the phone receives the
 *    phone-unlock key, the hub's unlock public keys, the recovery key and the
 *    LUKS header backup (deflated, in chunks that fit AppMessage.body).
 *  - **Unlock** works while the hub is locked, when its MLS state is sealed
 *    inside the volume: relay group `unlock`, outside MLS. The hub posts a
 *    signed challenge (Ed25519, fresh 256-bit nonce, expiry); the phone answers
 *    with the nonce and the phone-unlock key sealed with HPKE (RFC 9180 base
 *    mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the
 *    hub's unlock public key, the whole answer header as associated data.
 *    The hub accepts only an answer to its one outstanding challenge.
 *
 * HPKE is implemented here on node:crypto (X25519, HMAC-SHA256,
 * ChaCha20-Poly1305); the tests check it against @hpke/core both ways.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  sign,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { VigilError } from '../base/errors.js';

/** Relay group of the locked-hub channel (not an MLS group). */
export const UNLOCK_GROUP = 'unlock';
/** Config-group app topics. */
export const TOPIC_UNLOCK_KEY = 'unlock-key';
export const TOPIC_RECOVERY = 'recovery';
/** A challenge is answered within this time or replaced by a fresh one. */
export const CHALLENGE_TTL_MS = 10 * 60 * 1000;
/** Recovery chunks: payload bytes per app message (AppMessage.body max is 128 KiB). */
export const RECOVERY_CHUNK_BYTES = 112 * 1024;

export class UnlockError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UnlockError';
  }
}

// ---- encoding helpers ------------------------------------------------------------------------

export const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
export function unb64u(s: string, what: string, len?: number): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(s))
    throw new UnlockError('EUNLOCK_FORMAT', `${what}: not base64url`);
  const b = Buffer.from(s, 'base64url');
  if (len !== undefined && b.length !== len)
    throw new UnlockError('EUNLOCK_FORMAT', `${what}: expected ${len} bytes, got ${b.length}`);
  return b;
}
const B64U = z.string().regex(/^[A-Za-z0-9_-]+$/, 'base64url');
const Id = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/);
const Uuid = z.string().regex(/^[0-9a-fA-F-]{8,64}$/);

export const sha256Hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// ---- raw X25519 / Ed25519 keys ---------------------------------------------------------------

export interface RawKeyPair {
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
}

function rawOf(k: KeyObject, part: 'x' | 'd'): Buffer {
  const jwk = k.export({ format: 'jwk' });
  const v = jwk[part];
  if (typeof v !== 'string') throw new UnlockError('EUNLOCK_KEY', `key has no ${part}`);
  return Buffer.from(v, 'base64url');
}

export function generateX25519(): RawKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey: rawOf(privateKey, 'd'), publicKey: rawOf(publicKey, 'x') };
}

export function generateEd25519(): RawKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey: rawOf(privateKey, 'd'), publicKey: rawOf(publicKey, 'x') };
}

function okpPublic(crv: 'X25519' | 'Ed25519', raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new UnlockError('EUNLOCK_KEY', `${crv} public key must be 32 bytes`);
  return createPublicKey({ key: { kty: 'OKP', crv, x: b64u(raw) }, format: 'jwk' });
}
function okpPrivate(crv: 'X25519' | 'Ed25519', kp: RawKeyPair): KeyObject {
  return createPrivateKey({
    key: { kty: 'OKP', crv, x: b64u(kp.publicKey), d: b64u(kp.privateKey) },
    format: 'jwk',
  });
}

// ---- HPKE (RFC 9180) base mode, single shot --------------------------------------------------

const KEM_ID = 0x0020; // DHKEM(X25519, HKDF-SHA256)
const KDF_ID = 0x0001; // HKDF-SHA256
const AEAD_ID = 0x0003; // ChaCha20Poly1305
const i2osp = (n: number, len: number): Buffer => {
  const b = Buffer.alloc(len);
  b.writeUIntBE(n, 0, len);
  return b;
};
const KEM_SUITE = Buffer.concat([Buffer.from('KEM'), i2osp(KEM_ID, 2)]);
const HPKE_SUITE = Buffer.concat([
  Buffer.from('HPKE'),
  i2osp(KEM_ID, 2),
  i2osp(KDF_ID, 2),
  i2osp(AEAD_ID, 2),
]);
const V1 = Buffer.from('HPKE-v1');

function extract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt).update(ikm).digest();
}
function expand(prk: Uint8Array, info: Uint8Array, len: number): Buffer {
  const out: Buffer[] = [];
  let t: Buffer = Buffer.alloc(0);
  for (let i = 1; out.length * 32 < len; i++) {
    t = createHmac('sha256', prk)
      .update(Buffer.concat([t, info, Buffer.from([i])]))
      .digest();
    out.push(t);
  }
  return Buffer.concat(out).subarray(0, len);
}
const labeledExtract = (suite: Buffer, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer =>
  extract(salt, Buffer.concat([V1, suite, Buffer.from(label), ikm]));
const labeledExpand = (
  suite: Buffer,
  prk: Uint8Array,
  label: string,
  info: Uint8Array,
  len: number,
): Buffer => expand(prk, Buffer.concat([i2osp(len, 2), V1, suite, Buffer.from(label), info]), len);

function kemSharedSecret(dh: Buffer, enc: Uint8Array, pkR: Uint8Array): Buffer {
  const eae = labeledExtract(KEM_SUITE, Buffer.alloc(0), 'eae_prk', dh);
  return labeledExpand(KEM_SUITE, eae, 'shared_secret', Buffer.concat([enc, pkR]), 32);
}

function keySchedule(shared: Buffer, info: Uint8Array): { key: Buffer; nonce: Buffer } {
  const empty = Buffer.alloc(0);
  const pskIdHash = labeledExtract(HPKE_SUITE, empty, 'psk_id_hash', empty);
  const infoHash = labeledExtract(HPKE_SUITE, empty, 'info_hash', info);
  const ctx = Buffer.concat([Buffer.from([0]), pskIdHash, infoHash]);
  const secret = labeledExtract(HPKE_SUITE, shared, 'secret', empty);
  return {
    key: labeledExpand(HPKE_SUITE, secret, 'key', ctx, 32),
    nonce: labeledExpand(HPKE_SUITE, secret, 'base_nonce', ctx, 12),
  };
}

/** HPKE base-mode seal to `recipientPublicKey` (raw X25519). Returns the encapsulated key and ciphertext. */
export function hpkeSeal(
  recipientPublicKey: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  ephemeral: RawKeyPair = generateX25519(),
): { enc: Buffer; ct: Buffer } {
  const dh = diffieHellman({
    privateKey: okpPrivate('X25519', ephemeral),
    publicKey: okpPublic('X25519', recipientPublicKey),
  });
  const shared = kemSharedSecret(dh, ephemeral.publicKey, recipientPublicKey);
  const { key, nonce } = keySchedule(shared, info);
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const ct = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  return { enc: Buffer.from(ephemeral.publicKey), ct };
}

/** HPKE base-mode open; throws `EUNLOCK_OPEN` when the ciphertext does not authenticate. */
export function hpkeOpen(
  recipient: RawKeyPair,
  enc: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  ct: Uint8Array,
): Buffer {
  if (ct.length < 16) throw new UnlockError('EUNLOCK_OPEN', 'ciphertext too short');
  let dh: Buffer;
  try {
    dh = diffieHellman({
      privateKey: okpPrivate('X25519', recipient),
      publicKey: okpPublic('X25519', enc),
    });
  } catch (e) {
    throw new UnlockError('EUNLOCK_OPEN', 'bad encapsulated key', { cause: e });
  }
  const shared = kemSharedSecret(dh, enc, recipient.publicKey);
  const { key, nonce } = keySchedule(shared, info);
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  d.setAAD(aad, { plaintextLength: ct.length - 16 });
  d.setAuthTag(ct.subarray(ct.length - 16));
  try {
    return Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
  } catch (e) {
    throw new UnlockError(
      'EUNLOCK_OPEN',
      'the answer does not decrypt with this hub’s unlock key (sealed to another key, or altered)',
      { cause: e },
    );
  }
}

// ---- challenge (hub -> phones, relay group `unlock`) ----------------------------------------

export const UnlockChallenge = z.strictObject({
  v: z.literal(1),
  t: z.literal('unlock-challenge'),
  deviceId: Id,
  luksUuid: Uuid,
  nonce: B64U.length(43),
  reason: z.string().max(300),
  issuedAt: z.number().int().nonnegative(),
  expiresAt: z.number().int().nonnegative(),
  sig: B64U.length(86),
});
export type UnlockChallenge = z.infer<typeof UnlockChallenge>;

/** Hub status about one challenge (signed like challenges): refused answers, a key that did not open, success. */
export const UnlockStatus = z.strictObject({
  v: z.literal(1),
  t: z.literal('unlock-status'),
  deviceId: Id,
  nonce: B64U.length(43),
  /** The answer this is about (its `enc`), '' when none. */
  answer: z.union([B64U.length(43), z.literal('')]),
  state: z.enum(['refused', 'wrong-key', 'unlocked']),
  detail: z.string().max(300),
  at: z.number().int().nonnegative(),
  sig: B64U.length(86),
});
export type UnlockStatus = z.infer<typeof UnlockStatus>;

type Unsigned<T> = Omit<T, 'sig'>;

const challengeTbs = (c: Unsigned<UnlockChallenge>): Buffer =>
  Buffer.from(
    'vigil-unlock-challenge-v1\n' +
      JSON.stringify([
        c.v,
        c.t,
        c.deviceId,
        c.luksUuid,
        c.nonce,
        c.reason,
        c.issuedAt,
        c.expiresAt,
      ]),
  );
const statusTbs = (s: Unsigned<UnlockStatus>): Buffer =>
  Buffer.from(
    'vigil-unlock-status-v1\n' +
      JSON.stringify([s.v, s.t, s.deviceId, s.nonce, s.answer, s.state, s.detail, s.at]),
  );

export function signChallenge(c: Unsigned<UnlockChallenge>, signKey: RawKeyPair): UnlockChallenge {
  return { ...c, sig: b64u(sign(null, challengeTbs(c), okpPrivate('Ed25519', signKey))) };
}
export function signStatus(s: Unsigned<UnlockStatus>, signKey: RawKeyPair): UnlockStatus {
  return { ...s, sig: b64u(sign(null, statusTbs(s), okpPrivate('Ed25519', signKey))) };
}

function parseJson<T>(schema: z.ZodType<T>, bytes: Uint8Array, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new UnlockError('EUNLOCK_FORMAT', `${what} is not JSON`, { cause: e });
  }
  const r = schema.safeParse(raw);
  if (!r.success)
    throw new UnlockError('EUNLOCK_FORMAT', `${what} is malformed: ${r.error.issues[0]?.message}`);
  return r.data;
}

/** Parse and verify a challenge against the hub's escrowed signing key (phone side). */
export function verifyChallenge(
  bytes: Uint8Array,
  expect: { deviceId: string; signPublicKey: Uint8Array; now: number },
): UnlockChallenge {
  const c = parseJson(UnlockChallenge, bytes, 'unlock challenge');
  if (c.deviceId !== expect.deviceId)
    throw new UnlockError(
      'EUNLOCK_DEVICE',
      `challenge is for hub ${c.deviceId}, not ${expect.deviceId}`,
    );
  const { sig, ...rest } = c;
  if (
    !verify(
      null,
      challengeTbs(rest),
      okpPublic('Ed25519', expect.signPublicKey),
      unb64u(sig, 'sig'),
    )
  )
    throw new UnlockError(
      'EUNLOCK_SIGNATURE',
      'challenge signature does not verify with the hub’s unlock key',
    );
  if (c.expiresAt <= expect.now)
    throw new UnlockError(
      'EUNLOCK_EXPIRED',
      `challenge expired at ${new Date(c.expiresAt).toISOString()}`,
    );
  return c;
}

export function verifyStatus(
  bytes: Uint8Array,
  expect: { deviceId: string; signPublicKey: Uint8Array },
): UnlockStatus {
  const s = parseJson(UnlockStatus, bytes, 'unlock status');
  const { sig, ...rest } = s;
  if (
    s.deviceId !== expect.deviceId ||
    !verify(null, statusTbs(rest), okpPublic('Ed25519', expect.signPublicKey), unb64u(sig, 'sig'))
  )
    throw new UnlockError(
      'EUNLOCK_SIGNATURE',
      'status signature does not verify with the hub’s unlock key',
    );
  return s;
}

/** Which kind of message an `unlock` group item holds (phone side). */
export function unlockMessageType(
  bytes: Uint8Array,
): 'unlock-challenge' | 'unlock-status' | undefined {
  try {
    const t = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { t?: unknown }).t;
    return t === 'unlock-challenge' || t === 'unlock-status' ? t : undefined;
  } catch {
    return undefined;
  }
}

// ---- answer (phone -> hub, relay group `unlock`) ---------------------------------------------

export const UnlockAnswer = z.strictObject({
  v: z.literal(1),
  t: z.literal('unlock-answer'),
  deviceId: Id,
  luksUuid: Uuid,
  nonce: B64U.length(43),
  enc: B64U.length(43),
  ct: B64U.max(400),
});
export type UnlockAnswer = z.infer<typeof UnlockAnswer>;

const AnswerPlain = z.strictObject({ nonce: B64U.length(43), key: B64U.length(43) });

const answerInfo = (deviceId: string, luksUuid: string, nonce: string): Buffer =>
  Buffer.from(`vigil/unlock/v1\n${JSON.stringify([deviceId, luksUuid, nonce])}`);
const answerAad = (a: Omit<UnlockAnswer, 'ct'>): Buffer =>
  Buffer.from(JSON.stringify([a.v, a.t, a.deviceId, a.luksUuid, a.nonce, a.enc]));

/** Phone side: seal the phone-unlock key for the hub, bound to one challenge. */
export function sealAnswer(
  challenge: UnlockChallenge,
  unlockKey: Uint8Array,
  hubUnlockPublicKey: Uint8Array,
): Uint8Array {
  if (unlockKey.length !== 32)
    throw new UnlockError('EUNLOCK_KEY', 'the unlock key must be 32 bytes');
  const eph = generateX25519();
  const head = {
    v: 1 as const,
    t: 'unlock-answer' as const,
    deviceId: challenge.deviceId,
    luksUuid: challenge.luksUuid,
    nonce: challenge.nonce,
    enc: b64u(eph.publicKey),
  };
  const plain = Buffer.from(JSON.stringify({ nonce: challenge.nonce, key: b64u(unlockKey) }));
  const { ct } = hpkeSeal(
    hubUnlockPublicKey,
    answerInfo(head.deviceId, head.luksUuid, head.nonce),
    answerAad(head),
    plain,
    eph,
  );
  plain.fill(0);
  return Buffer.from(JSON.stringify({ ...head, ct: b64u(ct) }));
}

/**
 * Hub side: parse, check it answers `challenge`, open. Throws UnlockError with
 * a specific code: EUNLOCK_FORMAT, EUNLOCK_DEVICE, EUNLOCK_STALE (not the
 * outstanding challenge: a replay or a late answer), EUNLOCK_OPEN.
 */
export function openAnswer(
  bytes: Uint8Array,
  challenge: Pick<UnlockChallenge, 'deviceId' | 'luksUuid' | 'nonce'> | undefined,
  unlockKey: RawKeyPair,
): Uint8Array {
  const a = parseJson(UnlockAnswer, bytes, 'unlock answer');
  if (challenge === undefined)
    throw new UnlockError('EUNLOCK_STALE', 'no challenge is outstanding (replayed or late answer)');
  if (a.deviceId !== challenge.deviceId || a.luksUuid !== challenge.luksUuid)
    throw new UnlockError(
      'EUNLOCK_DEVICE',
      `answer is for ${a.deviceId}/${a.luksUuid}, this hub is ${challenge.deviceId}/${challenge.luksUuid}`,
    );
  const want = Buffer.from(challenge.nonce);
  const got = Buffer.from(a.nonce);
  if (want.length !== got.length || !timingSafeEqual(want, got))
    throw new UnlockError(
      'EUNLOCK_STALE',
      'answer is for an earlier challenge (replayed or late); a fresh challenge is outstanding',
    );
  const { ct, ...head } = a;
  const plain = hpkeOpen(
    unlockKey,
    unb64u(a.enc, 'enc', 32),
    answerInfo(a.deviceId, a.luksUuid, a.nonce),
    answerAad(head),
    unb64u(ct, 'ct'),
  );
  const p = parseJson(AnswerPlain, plain, 'sealed answer');
  plain.fill(0);
  if (p.nonce !== a.nonce)
    throw new UnlockError('EUNLOCK_STALE', 'sealed nonce differs from the answer’s nonce');
  return new Uint8Array(unb64u(p.key, 'key', 32));
}

// ---- escrow (hub -> phone, config group app topics) ------------------------------------------

/** Topic `unlock-key`: what a phone needs to unlock this hub later. */
export const UnlockKeyEscrow = z.strictObject({
  v: z.literal(1),
  deviceId: Id,
  luksUuid: Uuid,
  /** The phone-unlock key (a LUKS keyslot of its own). */
  phoneKey: B64U.length(43),
  /** X25519: answers are sealed to it. */
  unlockPublicKey: B64U.length(43),
  /** Ed25519: challenges and statuses are signed with it. */
  signPublicKey: B64U.length(43),
});
export type UnlockKeyEscrow = z.infer<typeof UnlockKeyEscrow>;

export function encodeUnlockKeyEscrow(e: UnlockKeyEscrow): Uint8Array {
  return Buffer.from(JSON.stringify(UnlockKeyEscrow.parse(e)));
}
export function decodeUnlockKeyEscrow(bytes: Uint8Array): UnlockKeyEscrow {
  return parseJson(UnlockKeyEscrow, bytes, 'unlock-key escrow');
}

export const RecoveryManifest = z.strictObject({
  v: z.literal(1),
  t: z.literal('manifest'),
  /** One escrow run (chunks of different runs never mix). */
  id: z.string().regex(/^[0-9a-f]{32}$/),
  deviceId: Id,
  luksUuid: Uuid,
  recoveryKey: z.string().min(1).max(200),
  headerSize: z.number().int().positive(),
  headerSha256: z.string().regex(/^[0-9a-f]{64}$/),
  compression: z.literal('deflate'),
  compressedSize: z.number().int().positive(),
  compressedSha256: z.string().regex(/^[0-9a-f]{64}$/),
  chunks: z.number().int().positive().max(4096),
  createdAt: z.number().int().nonnegative(),
});
export type RecoveryManifest = z.infer<typeof RecoveryManifest>;

export const RecoveryChunkHead = z.strictObject({
  v: z.literal(1),
  t: z.literal('chunk'),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  index: z.number().int().nonnegative(),
});
export type RecoveryChunkHead = z.infer<typeof RecoveryChunkHead>;

export type RecoveryMessage =
  | { readonly t: 'manifest'; readonly manifest: RecoveryManifest }
  | { readonly t: 'chunk'; readonly head: RecoveryChunkHead; readonly data: Uint8Array };

/** `recovery` body: u16 big-endian length of a JSON head, the head, then raw payload bytes. */
export function encodeRecoveryMessage(
  head: RecoveryManifest | RecoveryChunkHead,
  data?: Uint8Array,
): Uint8Array {
  const h = Buffer.from(JSON.stringify(head));
  if (h.length > 0xffff) throw new UnlockError('EUNLOCK_FORMAT', 'recovery head too long');
  return Buffer.concat([i2osp(h.length, 2), h, data ?? Buffer.alloc(0)]);
}

export function decodeRecoveryMessage(bytes: Uint8Array): RecoveryMessage {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 2) throw new UnlockError('EUNLOCK_FORMAT', 'recovery message too short');
  const n = b.readUInt16BE(0);
  if (b.length < 2 + n) throw new UnlockError('EUNLOCK_FORMAT', 'recovery message truncated');
  const head = b.subarray(2, 2 + n);
  const t = (() => {
    try {
      return (JSON.parse(head.toString('utf8')) as { t?: unknown }).t;
    } catch {
      return undefined;
    }
  })();
  if (t === 'manifest') {
    if (b.length !== 2 + n) throw new UnlockError('EUNLOCK_FORMAT', 'manifest carries no payload');
    return { t, manifest: parseJson(RecoveryManifest, head, 'recovery manifest') };
  }
  if (t === 'chunk')
    return {
      t,
      head: parseJson(RecoveryChunkHead, head, 'recovery chunk'),
      data: b.subarray(2 + n),
    };
  throw new UnlockError('EUNLOCK_FORMAT', 'recovery message of unknown type');
}
