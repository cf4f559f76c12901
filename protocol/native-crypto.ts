/**
 * A ts-mls `CryptoProvider` on node:crypto (OpenSSL) for Vigil's ciphersuite
 * (MLS_256_XWING_CHACHA20POLY1305_SHA512_Ed25519). ts-mls's default provider
 * runs X25519, ChaCha20-Poly1305 and the HPKE key schedule in JavaScript and
 * pays a WebCrypto key import per HMAC; this one does them natively:
 *
 *  - hash, HMAC and HKDF (RFC 5869): createHash / createHmac;
 *  - Ed25519 (RFC 8032): sign / verify, private keys as 48-byte PKCS#8, the same
 *    bytes the default provider generates (a 32-byte seed is accepted too), so
 *    a signing identity persisted under one provider signs under the other;
 *  - ChaCha20-Poly1305 (RFC 8439) for MLS messages and HPKE;
 *  - HPKE (RFC 9180, base mode) key schedule, seal/open and export;
 *  - the X25519 half of X-Wing and ML-KEM-768's SHA-3/SHAKE: the KEM stays
 *    @hpke/hybridkem-x-wing's (ML-KEM-768's lattice arithmetic in JavaScript),
 *    with its X25519 replaced by node:crypto's through the class's protected
 *    `_x25519` field and the hashes of its ML-KEM (`_m`) by node:crypto's.
 *
 * X25519 and Ed25519 keys are imported as JWK, not DER (see `okpPrivateKey`).
 *
 * Wire-equivalent to the default provider (the tests cross-check every
 * operation and run a hub on one provider against a phone on the other).
 * Loaded lazily by `loadMlsProfile()`; `{ crypto: 'js' }` selects ts-mls's own.
 */
import {
  type KeyObject,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomFillSync,
  sign as edSign,
  timingSafeEqual,
  verify as edVerify,
} from 'node:crypto';
import { XWing } from '@hpke/hybridkem-x-wing';
import type {
  Ciphersuite,
  CiphersuiteImpl,
  CryptoProvider,
  Hash,
  HashAlgorithm,
  Hpke,
  Kdf,
  KdfAlgorithm,
  PrivateKey,
  PublicKey,
  Rng,
  Signature,
} from 'ts-mls';
import { VigilError } from '../base/errors.js';

export class NativeCryptoError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'NativeCryptoError';
  }
}

const TAG_LENGTH = 16;
const CHACHA_KEY_LENGTH = 32;
const CHACHA_NONCE_LENGTH = 12;

/** DER prefixes of an Ed25519 PKCS#8 private key / SPKI public key around its raw 32 bytes. */
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');

/** A fresh Uint8Array owning exactly its bytes (no pooled Buffer, no Buffer#slice view semantics). */
function own(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u16(n: number): Uint8Array {
  return Uint8Array.of(n >>> 8, n & 0xff);
}

// ---- hash, HMAC, HKDF ---------------------------------------------------------------

type NodeHash = 'sha256' | 'sha384' | 'sha512';

const HASH: Record<HashAlgorithm, { node: NodeHash; size: number }> = {
  'SHA-256': { node: 'sha256', size: 32 },
  'SHA-384': { node: 'sha384', size: 48 },
  'SHA-512': { node: 'sha512', size: 64 },
};
const KDF_HASH: Record<KdfAlgorithm, HashAlgorithm> = {
  'HKDF-SHA256': 'SHA-256',
  'HKDF-SHA384': 'SHA-384',
  'HKDF-SHA512': 'SHA-512',
};
/** RFC 9180 §7.2 KDF identifiers. */
const KDF_ID: Record<KdfAlgorithm, number> = {
  'HKDF-SHA256': 0x0001,
  'HKDF-SHA384': 0x0002,
  'HKDF-SHA512': 0x0003,
};

function hmac(h: NodeHash, key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const m = createHmac(h, key);
  for (const d of data) m.update(d);
  return own(m.digest());
}

export function nativeHash(alg: HashAlgorithm): Hash {
  const h = HASH[alg].node;
  return {
    digest: (data) => Promise.resolve(own(createHash(h).update(data).digest())),
    mac: (key, data) => Promise.resolve(hmac(h, key, data)),
    verifyMac: (key, mac, data) => {
      const want = hmac(h, key, data);
      return Promise.resolve(want.length === mac.length && timingSafeEqual(want, mac));
    },
  };
}

/** HKDF-Expand (RFC 5869 §2.3). */
function hkdfExpand(h: NodeHash, size: number, prk: Uint8Array, info: Uint8Array, len: number) {
  if (!Number.isInteger(len) || len < 0 || len > 255 * size)
    throw new NativeCryptoError('EKDF_LENGTH', `HKDF cannot expand to ${String(len)} bytes`);
  const out = new Uint8Array(len);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, off = 0; off < len; i++) {
    const next = hmac(h, prk, t, info, Uint8Array.of(i));
    t.fill(0);
    t = next;
    out.set(t.subarray(0, Math.min(t.length, len - off)), off);
    off += t.length;
  }
  t.fill(0);
  return out;
}

export function nativeKdf(alg: KdfAlgorithm): Kdf {
  const { node: h, size } = HASH[KDF_HASH[alg]];
  return {
    extract: (salt, ikm) => {
      // Same rule as @hpke/common's HKDF (the default provider): an empty salt
      // means HashLen zeros, any other salt must be HashLen long.
      if (salt.length !== 0 && salt.length !== size)
        return Promise.reject(
          new NativeCryptoError('EKDF_SALT', `HKDF salt must be empty or ${String(size)} bytes`),
        );
      return Promise.resolve(hmac(h, salt.length === 0 ? new Uint8Array(size) : salt, ikm));
    },
    expand: (prk, info, len) => {
      try {
        return Promise.resolve(hkdfExpand(h, size, prk, info, len));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    size,
  };
}

// ---- Ed25519 -------------------------------------------------------------------------

/**
 * An X25519 or Ed25519 private key from its raw 32 bytes. Imported as a JWK:
 * node:crypto builds it from the raw bytes, about ten times cheaper than
 * parsing PKCS#8 DER through OpenSSL 3's decoders (0.05 vs 0.45 ms here), and
 * an epoch advance imports a dozen. The JWK parser requires `x` but derives
 * the public half from `d` (for Ed25519 the signature depends on it: the RFC
 * 8032 vector in the tests would fail otherwise), so `x` carries zeros rather
 * than a value we would have to compute. The price: the base64url copy of the
 * secret is an immutable string until the next GC (docs/decisions.md).
 */
function okpPrivateKey(crv: 'X25519' | 'Ed25519', raw: Uint8Array): KeyObject {
  return createPrivateKey({
    key: { kty: 'OKP', crv, d: b64url(raw), x: UNUSED_X },
    format: 'jwk',
  });
}
const UNUSED_X = Buffer.alloc(32).toString('base64url');

/** A raw 32-byte X25519 or Ed25519 public key (as a JWK, for the same reason). */
function okpPublicKey(crv: 'X25519' | 'Ed25519', raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv, x: b64url(raw) }, format: 'jwk' });
}

function b64url(raw: Uint8Array): string {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
}

function ed25519PrivateKey(signKey: Uint8Array): KeyObject {
  if (signKey.length !== 32 && signKey.length !== ED25519_PKCS8.length + 32)
    throw new NativeCryptoError(
      'ESIGN_KEY',
      `an Ed25519 signing key is a 32-byte seed or 48-byte PKCS#8, not ${String(signKey.length)} bytes`,
    );
  const prefix = signKey.subarray(0, signKey.length - 32);
  try {
    // the 48-byte PKCS#8 form ts-mls generates is the fixed prefix and the seed
    if (prefix.length === 0 || ED25519_PKCS8.equals(prefix))
      return okpPrivateKey('Ed25519', signKey.subarray(prefix.length));
    const der = Buffer.from(signKey);
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  } catch (e) {
    throw new NativeCryptoError('ESIGN_KEY', 'the Ed25519 signing key does not parse', {
      cause: e,
    });
  }
}

export const nativeEd25519: Signature = {
  sign(signKey, message) {
    try {
      return Promise.resolve(own(edSign(null, message, ed25519PrivateKey(signKey))));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  },
  verify(publicKey, message, signature) {
    // The default provider's WebCrypto import rejects a malformed key too.
    if (publicKey.length !== 32)
      return Promise.reject(
        new NativeCryptoError(
          'EVERIFY_KEY',
          `an Ed25519 public key is 32 bytes, not ${String(publicKey.length)}`,
        ),
      );
    try {
      return Promise.resolve(
        edVerify(null, message, okpPublicKey('Ed25519', publicKey), signature),
      );
    } catch (e) {
      return Promise.reject(
        new NativeCryptoError('EVERIFY_KEY', 'the Ed25519 public key does not parse', { cause: e }),
      );
    }
  },
  keygen() {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    const signKey = own(pkcs8);
    pkcs8.fill(0);
    return Promise.resolve({ publicKey: own(spki.subarray(ED25519_SPKI.length)), signKey });
  },
};

// ---- X25519 and X-Wing ------------------------------------------------------------------

/** X25519(sk, pk) (RFC 7748); rejects an all-zero result as OpenSSL does. */
export function nativeX25519(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  if (sk.length !== 32 || pk.length !== 32)
    throw new NativeCryptoError('EX25519', 'X25519 keys are 32 bytes');
  const shared = diffieHellman({
    privateKey: okpPrivateKey('X25519', sk),
    publicKey: okpPublicKey('X25519', pk),
  });
  const out = own(shared);
  shared.fill(0);
  return out;
}

/**
 * @hpke/hybridkem-x-wing's X-Wing with node:crypto X25519 in place of its
 * JavaScript one, and node:crypto SHA-3/SHAKE inside its ML-KEM-768. The class
 * calls only `derive(sk, pk)` on its protected `_x25519` (pinned package
 * version 0.7.0), and its ML-KEM (`_m`, mlkem 2.7.0) hashes only through the
 * methods replaced by `nodeShaMlKem` (the cross-check tests catch a change).
 */
export class NodeX25519XWing extends XWing {
  constructor() {
    super();
    const derive = (sk: Uint8Array, pk: Uint8Array): Promise<Uint8Array> => {
      try {
        return Promise.resolve(nativeX25519(sk, pk));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    Object.defineProperty(this, '_x25519', { value: { derive }, writable: false });
    nodeShaMlKem(this._m);
    // X-Wing's key expansion (draft-connolly-cfrg-xwing-kem §5.2), the same steps as the
    // package's private method with node:crypto's SHAKE256 in place of its JavaScript one:
    // every key derivation and every decapsulation runs it.
    const m = this._m;
    const expand = async (
      sk: Uint8Array,
    ): Promise<[Uint8Array, Uint8Array, Uint8Array, Uint8Array]> => {
      const expanded = createHash('shake256', { outputLength: 96 }).update(sk).digest();
      const [pkM, skM] = await m.deriveKeyPair(expanded.subarray(0, 64));
      const skX = new Uint8Array(expanded.subarray(64, 96));
      expanded.fill(0);
      const pkX = nativeX25519(skX, X25519_BASE);
      return [skM, skX, pkM, pkX];
    };
    if (!('_expandDecapsulationKey' in this))
      throw new NativeCryptoError(
        'EXWING',
        'X-Wing has no _expandDecapsulationKey: its internals changed',
      );
    Object.defineProperty(this, '_expandDecapsulationKey', { value: expand, writable: false });
  }
}

/** The X25519 base point (u = 9). */
const X25519_BASE = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 9 : 0));

/** The hash methods of mlkem's ML-KEM that `nodeShaMlKem` replaces. */
export const MLKEM_HASH_METHODS = ['_g', '_h', '_kdf', '_xof', '_prf1', '_prf2'] as const;

/**
 * Replace the hashes of an mlkem ML-KEM instance (FIPS 203: G = SHA3-512,
 * H = SHA3-256, J/KDF = SHAKE256, XOF = SHAKE128, PRF = SHAKE256) by
 * node:crypto's, about twice as fast as its JavaScript Keccak for a whole
 * key derivation. Each writes into the instance's own output buffer, as the
 * originals do, so its wipe after every operation (`_zeroPool`) still covers
 * them. Throws if mlkem's internals are not the ones this was written for.
 */
function nodeShaMlKem(m: object): void {
  const k = m as Record<string, unknown>;
  for (const name of MLKEM_HASH_METHODS)
    if (typeof k[name] !== 'function')
      throw new NativeCryptoError(
        'EMLKEM',
        `mlkem's ML-KEM has no ${name}(): its internals changed`,
      );
  const buf = (name: string): Uint8Array => {
    const b = k[name];
    if (!(b instanceof Uint8Array))
      throw new NativeCryptoError('EMLKEM', `mlkem's ML-KEM has no ${name}: its internals changed`);
    return b;
  };
  /** Digest `parts` into the named buffer (its full length), wiping node's copy. */
  const into = (name: string, alg: string, xof: boolean, parts: readonly Uint8Array[]) => {
    const out = buf(name);
    const h = createHash(alg, xof ? { outputLength: out.length } : {});
    for (const p of parts) h.update(p);
    const d = h.digest();
    out.set(d);
    d.fill(0);
    return out;
  };
  const opt = (a: Uint8Array, b: Uint8Array | undefined) => (b === undefined ? [a] : [a, b]);
  const methods: Record<(typeof MLKEM_HASH_METHODS)[number], (...a: never[]) => unknown> = {
    _g: (a: Uint8Array, b?: Uint8Array) => {
      const out = into('_bufG', 'sha3-512', false, opt(a, b));
      return [out.subarray(0, 32), out.subarray(32, 64)];
    },
    _h: (msg: Uint8Array) => into('_bufH', 'sha3-256', false, [msg]),
    _kdf: (a: Uint8Array, b?: Uint8Array) => into('_bufKdf', 'shake256', true, opt(a, b)),
    _xof: (seed: Uint8Array) => into('_bufXof', 'shake128', true, [seed]),
    _prf1: (sigma: Uint8Array, nonce: number) =>
      into('_bufPrf1', 'shake256', true, [sigma, Uint8Array.of(nonce)]),
    _prf2: (sigma: Uint8Array, nonce: number) =>
      into('_bufPrf2', 'shake256', true, [sigma, Uint8Array.of(nonce)]),
  };
  for (const name of MLKEM_HASH_METHODS)
    Object.defineProperty(m, name, { value: methods[name], writable: false });
}

// ---- ChaCha20-Poly1305 -----------------------------------------------------------------

export function chachaSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LENGTH });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const out = new Uint8Array(plaintext.length + TAG_LENGTH);
  const body = c.update(plaintext);
  out.set(body, 0);
  const fin = c.final();
  out.set(fin, body.length);
  out.set(c.getAuthTag(), body.length + fin.length);
  return out;
}

export function chachaOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  if (ciphertext.length < TAG_LENGTH)
    throw new NativeCryptoError('EAEAD', 'ciphertext is shorter than its tag');
  const n = ciphertext.length - TAG_LENGTH;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LENGTH });
  d.setAAD(aad, { plaintextLength: n });
  d.setAuthTag(ciphertext.subarray(n));
  const out = new Uint8Array(n);
  const body = d.update(ciphertext.subarray(0, n));
  out.set(body, 0);
  body.fill(0);
  try {
    out.set(d.final(), body.length);
  } catch (e) {
    out.fill(0);
    // "decrypt" and "tag" as in the default provider's message: callers
    // classify a wrong key by them (app/e2ee/pairing-initiator.ts, EPSK_MISMATCH).
    throw new NativeCryptoError(
      'EAEAD',
      'ChaCha20-Poly1305 decrypt failed: invalid tag (wrong key or altered data)',
      { cause: e },
    );
  }
  return out;
}

// ---- HPKE (RFC 9180, base mode) -------------------------------------------------------------

const KEM_ID_XWING = 0x647a;
const AEAD_ID_CHACHA20POLY1305 = 0x0003;
const MODE_BASE = 0x00;
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const HPKE_V1 = utf8('HPKE-v1');
const LABEL = {
  pskIdHash: utf8('psk_id_hash'),
  infoHash: utf8('info_hash'),
  secret: utf8('secret'),
  key: utf8('key'),
  baseNonce: utf8('base_nonce'),
  exp: utf8('exp'),
  sec: utf8('sec'),
} as const;

interface HpkeContext {
  readonly key: Uint8Array;
  readonly baseNonce: Uint8Array;
  readonly exporterSecret: Uint8Array;
}

function wipe(ctx: HpkeContext): void {
  ctx.key.fill(0);
  ctx.baseNonce.fill(0);
  ctx.exporterSecret.fill(0);
}

function toBytes(b: ArrayBuffer): Uint8Array {
  return new Uint8Array(b);
}

/** X-Wing + HKDF + ChaCha20-Poly1305 HPKE with ts-mls's `Hpke` interface. */
export function nativeHpke(kdfAlg: KdfAlgorithm, kem: XWing = new NodeX25519XWing()): Hpke {
  const { node: h, size } = HASH[KDF_HASH[kdfAlg]];
  const suiteId = concat([
    utf8('HPKE'),
    u16(KEM_ID_XWING),
    u16(KDF_ID[kdfAlg]),
    u16(AEAD_ID_CHACHA20POLY1305),
  ]);
  const labeledExtract = (salt: Uint8Array, label: Uint8Array, ikm: Uint8Array) =>
    hmac(h, salt.length === 0 ? new Uint8Array(size) : salt, HPKE_V1, suiteId, label, ikm);
  const labeledExpand = (prk: Uint8Array, label: Uint8Array, info: Uint8Array, len: number) =>
    hkdfExpand(h, size, prk, concat([u16(len), HPKE_V1, suiteId, label, info]), len);

  function keySchedule(sharedSecret: Uint8Array, info: Uint8Array): HpkeContext {
    const empty = new Uint8Array(0);
    const ksc = concat([
      Uint8Array.of(MODE_BASE),
      labeledExtract(empty, LABEL.pskIdHash, empty),
      labeledExtract(empty, LABEL.infoHash, info),
    ]);
    const secret = labeledExtract(sharedSecret, LABEL.secret, empty);
    sharedSecret.fill(0);
    const ctx = {
      key: labeledExpand(secret, LABEL.key, ksc, CHACHA_KEY_LENGTH),
      baseNonce: labeledExpand(secret, LABEL.baseNonce, ksc, CHACHA_NONCE_LENGTH),
      exporterSecret: labeledExpand(secret, LABEL.exp, ksc, size),
    };
    secret.fill(0);
    return ctx;
  }

  async function sender(publicKey: PublicKey, info: Uint8Array) {
    const { sharedSecret, enc } = await kem.encap({ recipientPublicKey: publicKey });
    return { ctx: keySchedule(toBytes(sharedSecret), info), enc: toBytes(enc) };
  }
  async function recipient(privateKey: PrivateKey, enc: Uint8Array, info: Uint8Array) {
    const sharedSecret = await kem.decap({ recipientKey: privateKey, enc: own(enc) });
    return keySchedule(toBytes(sharedSecret), info);
  }
  const exportFrom = (ctx: HpkeContext, exporterContext: Uint8Array, length: number) =>
    labeledExpand(ctx.exporterSecret, LABEL.sec, exporterContext, length);

  return {
    async seal(publicKey, plaintext, info, aad) {
      const { ctx, enc } = await sender(publicKey, info);
      try {
        return { ct: chachaSeal(ctx.key, ctx.baseNonce, aad ?? new Uint8Array(0), plaintext), enc };
      } finally {
        wipe(ctx);
      }
    },
    async open(privateKey, kemOutput, ciphertext, info, aad) {
      const ctx = await recipient(privateKey, kemOutput, info);
      try {
        return chachaOpen(ctx.key, ctx.baseNonce, aad ?? new Uint8Array(0), ciphertext);
      } finally {
        wipe(ctx);
      }
    },
    async exportSecret(publicKey, exporterContext, length, info) {
      const { ctx, enc } = await sender(publicKey, info);
      try {
        return { enc, secret: exportFrom(ctx, exporterContext, length) };
      } finally {
        wipe(ctx);
      }
    },
    async importSecret(privateKey, exporterContext, kemOutput, length, info) {
      const ctx = await recipient(privateKey, kemOutput, info);
      try {
        return exportFrom(ctx, exporterContext, length);
      } finally {
        wipe(ctx);
      }
    },
    async importPrivateKey(k) {
      return (await kem.deserializePrivateKey(own(k))) as PrivateKey;
    },
    async importPublicKey(k) {
      return (await kem.deserializePublicKey(own(k))) as PublicKey;
    },
    async exportPublicKey(k) {
      return toBytes(await kem.serializePublicKey(k));
    },
    async exportPrivateKey(k) {
      return toBytes(await kem.serializePrivateKey(k));
    },
    encryptAead(key, nonce, aad, plaintext) {
      try {
        return Promise.resolve(chachaSeal(key, nonce, aad ?? new Uint8Array(0), plaintext));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    decryptAead(key, nonce, aad, ciphertext) {
      try {
        return Promise.resolve(chachaOpen(key, nonce, aad ?? new Uint8Array(0), ciphertext));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    async deriveKeyPair(ikm) {
      const kp = await kem.deriveKeyPair(own(ikm));
      return { privateKey: kp.privateKey as PrivateKey, publicKey: kp.publicKey as PublicKey };
    },
    async generateKeyPair() {
      const kp = await kem.generateKeyPair();
      return { privateKey: kp.privateKey as PrivateKey, publicKey: kp.publicKey as PublicKey };
    },
    keyLength: CHACHA_KEY_LENGTH,
    nonceLength: CHACHA_NONCE_LENGTH,
  };
}

// ---- the provider ------------------------------------------------------------------------

export const nativeRng: Rng = {
  randomBytes: (n) => randomFillSync(new Uint8Array(n)),
};

/** Vigil's suite only: X-Wing, HKDF-SHA*, ChaCha20-Poly1305, SHA-2, Ed25519. */
export const nativeCryptoProvider: CryptoProvider = {
  getCiphersuiteImpl(cs: Ciphersuite): Promise<CiphersuiteImpl> {
    if (
      cs.hpke.kem !== 'X-Wing' ||
      cs.hpke.aead !== 'CHACHA20POLY1305' ||
      cs.signature !== 'Ed25519'
    )
      return Promise.reject(
        new NativeCryptoError(
          'EUNSUPPORTED_SUITE',
          `the native crypto provider implements X-Wing/ChaCha20-Poly1305/Ed25519 suites only, not ${cs.name}`,
        ),
      );
    return Promise.resolve({
      hash: nativeHash(cs.hash),
      kdf: nativeKdf(cs.hpke.kdf),
      signature: nativeEd25519,
      hpke: nativeHpke(cs.hpke.kdf),
      rng: nativeRng,
      name: cs.name,
    });
  },
};
