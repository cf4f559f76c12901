/**
 * The node:crypto provider against published vectors (RFC 5869, 7748, 8032)
 * and, operation by operation, against ts-mls's default (JavaScript) provider:
 * deterministic operations must give the same bytes, randomised ones must
 * open/verify across the two.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { XWing } from '@hpke/hybridkem-x-wing';
import { x25519 } from '@noble/curves/ed25519.js';
import {
  MLKEM_HASH_METHODS,
  NodeX25519XWing,
  chachaOpen,
  chachaSeal,
  nativeCryptoProvider,
  nativeEd25519,
  nativeHash,
  nativeKdf,
  nativeRng,
  nativeX25519,
} from '../../protocol/native-crypto.js';
import { CIPHERSUITE_NAME, loadMlsProfile } from '../../protocol/mls-profile.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

const js = (await loadMlsProfile({ crypto: 'js' })).cs;
const native = (await loadMlsProfile({ crypto: 'native' })).cs;

void t.test('provides Vigil suite only, with a clear error for others', async (t) => {
  const { mls } = await loadMlsProfile();
  t.equal(native.name, CIPHERSUITE_NAME);
  await t.rejects(
    nativeCryptoProvider.getCiphersuiteImpl(
      mls.getCiphersuiteFromName('MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'),
    ),
    { code: 'EUNSUPPORTED_SUITE', message: /MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519/ },
  );
  t.equal(nativeRng.randomBytes(33).length, 33);
  t.not(Buffer.from(nativeRng.randomBytes(32)).toString('hex'), '00'.repeat(32));
});

void t.test('hash and HMAC equal the default provider', async (t) => {
  for (const n of [0, 1, 1000, 70_000]) {
    const data = randomBytes(n);
    const key = randomBytes(64);
    t.ok(same(await native.hash.digest(data), await js.hash.digest(data)), `digest ${n}`);
    const mac = await native.hash.mac(key, data);
    t.ok(same(mac, await js.hash.mac(key, data)), `mac ${n}`);
    t.ok(await native.hash.verifyMac(key, mac, data));
    const bad = Uint8Array.from(mac);
    bad[0]! ^= 1;
    t.notOk(await native.hash.verifyMac(key, bad, data), 'flipped bit');
    t.notOk(await native.hash.verifyMac(key, mac.subarray(1), data), 'short mac');
  }
  t.equal(
    Buffer.from(await nativeHash('SHA-256').digest(Buffer.from('abc'))).toString('hex'),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
});

void t.test('HKDF: RFC 5869 case 1 and the default provider', async (t) => {
  const k256 = nativeKdf('HKDF-SHA256');
  const okm = await k256.expand(
    hex('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5'),
    hex('f0f1f2f3f4f5f6f7f8f9'),
    42,
  );
  t.equal(
    Buffer.from(okm).toString('hex'),
    '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
  );
  t.equal(k256.size, 32);
  t.equal(native.kdf.size, js.kdf.size);

  const ikm = randomBytes(40);
  for (const salt of [new Uint8Array(0), randomBytes(64)])
    t.ok(
      same(await native.kdf.extract(salt, ikm), await js.kdf.extract(salt, ikm)),
      `extract, ${salt.length}-byte salt`,
    );
  // the default provider's rule: a salt is empty or HashLen long
  await t.rejects(js.kdf.extract(randomBytes(13), ikm));
  await t.rejects(native.kdf.extract(randomBytes(13), ikm), { code: 'EKDF_SALT' });

  const prk = randomBytes(64);
  const info = randomBytes(20);
  for (const len of [0, 1, 32, 64, 65, 200])
    t.ok(
      same(await native.kdf.expand(prk, info, len), await js.kdf.expand(prk, info, len)),
      `expand ${len}`,
    );
  await t.rejects(js.kdf.expand(prk, info, 255 * 64 + 1));
  await t.rejects(native.kdf.expand(prk, info, 255 * 64 + 1), { code: 'EKDF_LENGTH' });
});

void t.test(
  'Ed25519: RFC 8032 test 1, same signatures and keys as the default provider',
  async (t) => {
    const seed = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    const pub = hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    const sig = await nativeEd25519.sign(seed, new Uint8Array(0));
    t.equal(
      Buffer.from(sig).toString('hex'),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    t.ok(await nativeEd25519.verify(pub, new Uint8Array(0), sig));

    const msg = randomBytes(300);
    const n = await native.signature.keygen();
    const j = await js.signature.keygen();
    t.equal(n.signKey.length, j.signKey.length, 'signing keys in the same (PKCS#8) format');
    t.equal(n.publicKey.length, 32);
    // Ed25519 is deterministic: each provider signs the other's keys to the same bytes.
    for (const kp of [n, j]) {
      const a = await native.signature.sign(kp.signKey, msg);
      const b = await js.signature.sign(kp.signKey, msg);
      t.ok(same(a, b), 'identical signature');
      t.ok(await js.signature.verify(kp.publicKey, msg, a));
      t.ok(await native.signature.verify(kp.publicKey, msg, b));
      t.notOk(await native.signature.verify(kp.publicKey, randomBytes(300), a), 'other message');
      const bad = Uint8Array.from(a);
      bad[10]! ^= 1;
      t.notOk(await native.signature.verify(kp.publicKey, msg, bad), 'flipped bit');
    }
    await t.rejects(js.signature.verify(randomBytes(31), msg, new Uint8Array(64)));
    await t.rejects(native.signature.verify(randomBytes(31), msg, new Uint8Array(64)), {
      code: 'EVERIFY_KEY',
    });
    await t.rejects(native.signature.sign(randomBytes(40), msg), { code: 'ESIGN_KEY' });
    // 48 bytes that are not the PKCS#8 prefix + seed go to the DER parser, which refuses them
    await t.rejects(native.signature.sign(randomBytes(48), msg), { code: 'ESIGN_KEY' });
  },
);

void t.test('X25519: RFC 7748 section 6.1', async (t) => {
  const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const b = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  const base = Buffer.alloc(32);
  base[0] = 9;
  const pa = nativeX25519(a, base);
  const pb = nativeX25519(b, base);
  t.equal(
    Buffer.from(pa).toString('hex'),
    '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  );
  t.equal(
    Buffer.from(pb).toString('hex'),
    'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
  );
  const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  t.equal(Buffer.from(nativeX25519(a, pb)).toString('hex'), k);
  t.equal(Buffer.from(nativeX25519(b, pa)).toString('hex'), k);
  for (let i = 0; i < 5; i++) {
    const sk = randomBytes(32);
    const pk = x25519.getPublicKey(randomBytes(32));
    t.ok(same(nativeX25519(sk, pk), x25519.getSharedSecret(sk, pk)), 'same as noble');
  }
  t.throws(() => nativeX25519(a, Buffer.alloc(32)), 'all-zero (low-order) point refused');
  t.throws(() => nativeX25519(a.subarray(1), pb), { code: 'EX25519' });
});

void t.test('X-Wing with node X25519 is the same KEM as the stock one', async (t) => {
  const mine = new NodeX25519XWing();
  const stock = new XWing();
  // if @hpke/hybridkem-x-wing renamed its field, our X25519 would be unused though all else passed
  const x25519Class = (k: XWing): string[] =>
    Object.values(k as unknown as Record<string, unknown>).map((v) =>
      typeof v === 'object' && v !== null ? v.constructor.name : typeof v,
    );
  t.ok(x25519Class(stock).includes('X25519'), 'the stock KEM holds a JS X25519');
  t.notOk(x25519Class(mine).includes('X25519'), 'ours holds none');
  // its ML-KEM hashes with node:crypto: the methods are replaced on the instance
  const ownNames = (k: XWing): string[] =>
    Object.getOwnPropertyNames((k as unknown as { _m: object })._m);
  t.same(
    MLKEM_HASH_METHODS.filter((n) => ownNames(mine).includes(n)),
    MLKEM_HASH_METHODS,
    'ours replaces every ML-KEM hash',
  );
  t.same(
    MLKEM_HASH_METHODS.filter((n) => ownNames(stock).includes(n)),
    [],
    'the stock KEM keeps its own',
  );
  t.ok(
    Object.getOwnPropertyNames(mine).includes('_expandDecapsulationKey'),
    'ours expands decapsulation keys with node SHAKE256',
  );
  // key derivation exercises G, H, XOF and PRF: the same keys for several seeds
  for (let i = 0; i < 8; i++) {
    const seed = randomBytes(32);
    const a = await mine.deriveKeyPair(seed);
    const b = await stock.deriveKeyPair(seed);
    t.ok(
      same(
        new Uint8Array(await mine.serializePrivateKey(a.privateKey)),
        new Uint8Array(await stock.serializePrivateKey(b.privateKey)),
      ) &&
        same(
          new Uint8Array(await mine.serializePublicKey(a.publicKey)),
          new Uint8Array(await stock.serializePublicKey(b.publicKey)),
        ),
      `same key pair for seed ${String(i)}`,
    );
  }
  const ikm = randomBytes(32);
  const m = await mine.deriveKeyPair(ikm);
  const s = await stock.deriveKeyPair(ikm);
  const pub = new Uint8Array(await mine.serializePublicKey(m.publicKey));
  t.ok(same(pub, new Uint8Array(await stock.serializePublicKey(s.publicKey))), 'same public key');
  const e1 = await mine.encap({ recipientPublicKey: s.publicKey });
  t.ok(
    same(
      new Uint8Array(await stock.decap({ recipientKey: s.privateKey, enc: e1.enc })),
      new Uint8Array(e1.sharedSecret),
    ),
    'mine encaps, stock decaps',
  );
  const e2 = await stock.encap({ recipientPublicKey: m.publicKey });
  t.ok(
    same(
      new Uint8Array(await mine.decap({ recipientKey: m.privateKey, enc: e2.enc })),
      new Uint8Array(e2.sharedSecret),
    ),
    'stock encaps, mine decaps',
  );
  // a damaged ML-KEM ciphertext: both take FIPS 203's implicit rejection (J = SHAKE256) alike
  const bad = new Uint8Array(e2.enc);
  bad[5]! ^= 1;
  const rejectMine = new Uint8Array(await mine.decap({ recipientKey: m.privateKey, enc: bad }));
  const rejectStock = new Uint8Array(await stock.decap({ recipientKey: s.privateKey, enc: bad }));
  t.ok(same(rejectMine, rejectStock), 'same implicit-rejection secret');
  t.notOk(same(rejectMine, new Uint8Array(e2.sharedSecret)), 'not the real secret');
});

void t.test('HPKE and AEAD interoperate with the default provider', async (t) => {
  const ikm = randomBytes(32);
  const n = await native.hpke.deriveKeyPair(ikm);
  const j = await js.hpke.deriveKeyPair(ikm);
  t.ok(
    same(
      await native.hpke.exportPublicKey(n.publicKey),
      await js.hpke.exportPublicKey(j.publicKey),
    ),
    'deriveKeyPair agrees',
  );
  t.ok(
    same(
      await native.hpke.exportPrivateKey(n.privateKey),
      await js.hpke.exportPrivateKey(j.privateKey),
    ),
  );
  const imported = await native.hpke.importPublicKey(await js.hpke.exportPublicKey(j.publicKey));
  const info = randomBytes(50);
  const aad = randomBytes(20);
  const pt = randomBytes(1000);

  const s1 = await native.hpke.seal(imported, pt, info, aad);
  t.ok(same(await js.hpke.open(j.privateKey, s1.enc, s1.ct, info, aad), pt), 'native seals');
  const s2 = await js.hpke.seal(j.publicKey, pt, info);
  t.ok(same(await native.hpke.open(n.privateKey, s2.enc, s2.ct, info), pt), 'js seals, no aad');
  await t.rejects(native.hpke.open(n.privateKey, s1.enc, s1.ct, randomBytes(50), aad), {
    code: 'EAEAD',
  });
  const bad = Uint8Array.from(s1.ct);
  bad[5]! ^= 1;
  // pairing-initiator.ts tells a wrong PSK by "decrypt"/"tag" in the message, as the default says it
  await t.rejects(native.hpke.open(n.privateKey, s1.enc, bad, info, aad), {
    code: 'EAEAD',
    message: /decrypt failed: invalid tag/,
  });

  const ctx = randomBytes(16);
  const x1 = await native.hpke.exportSecret(n.publicKey, ctx, 64, info);
  t.ok(same(await js.hpke.importSecret(j.privateKey, ctx, x1.enc, 64, info), x1.secret));
  const x2 = await js.hpke.exportSecret(j.publicKey, ctx, 64, info);
  t.ok(same(await native.hpke.importSecret(n.privateKey, ctx, x2.enc, 64, info), x2.secret));

  const pk = await native.hpke.importPrivateKey(await js.hpke.exportPrivateKey(j.privateKey));
  t.ok(same(await native.hpke.open(pk, s2.enc, s2.ct, info), pt), 'imported private key');
  const g = await native.hpke.generateKeyPair();
  const s3 = await js.hpke.seal(
    await js.hpke.importPublicKey(await native.hpke.exportPublicKey(g.publicKey)),
    pt,
    info,
  );
  t.ok(same(await native.hpke.open(g.privateKey, s3.enc, s3.ct, info), pt), 'generated pair');

  t.equal(native.hpke.keyLength, js.hpke.keyLength);
  t.equal(native.hpke.nonceLength, js.hpke.nonceLength);
  const key = randomBytes(32);
  const nonce = randomBytes(12);
  for (const size of [0, 17, 70_000]) {
    const p = randomBytes(size);
    const c = await native.hpke.encryptAead(key, nonce, aad, p);
    t.ok(same(c, await js.hpke.encryptAead(key, nonce, aad, p)), `AEAD ${size}: same bytes`);
    t.ok(same(await native.hpke.decryptAead(key, nonce, aad, c), p));
    t.ok(
      same(
        await native.hpke.decryptAead(
          key,
          nonce,
          undefined,
          chachaSeal(key, nonce, new Uint8Array(0), p),
        ),
        p,
      ),
    );
  }
  const c = chachaSeal(key, nonce, aad, pt);
  c[c.length - 1]! ^= 1;
  t.throws(() => chachaOpen(key, nonce, aad, c), { code: 'EAEAD' });
  await t.rejects(native.hpke.decryptAead(key, nonce, aad, c), { code: 'EAEAD' });
  await t.rejects(native.hpke.decryptAead(key, nonce, aad, new Uint8Array(15)), {
    code: 'EAEAD',
    message: /shorter than its tag/,
  });
});
