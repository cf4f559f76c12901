import t from 'tap';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import {
  CIPHERSUITE_NAME,
  DEFAULT_MLS_CRYPTO,
  GROUP_FOR_ITEM,
  LazyMlsProfile,
  PinnedAuthService,
  clientConfig,
  decodeKeyPackageMessage,
  decodeMessage,
  decodeState,
  encodeKeyPackageMessage,
  encodeMessage,
  encodeState,
  epochCheck,
  exportSecret,
  forgetPastEpochs,
  hubIdentity,
  itemWrapKey,
  keyPackageLifetime,
  leafIndexOf,
  loadMlsProfile,
  newKeyPackage,
  newSigningIdentity,
  phoneIdentity,
} from '../../protocol/mls-profile.js';

const lazy = new LazyMlsProfile();
const p = await lazy.get();

void t.test('profile basics', async (t) => {
  t.equal(await lazy.get(), p, 'loaded once');
  t.equal(p.cs.name, CIPHERSUITE_NAME);
  t.same(GROUP_FOR_ITEM, { clip: 'motion', thumbnail: 'thumbnail', live: 'livestream' });
  const lt = keyPackageLifetime(10_000_000_000, 20_000_000_000);
  t.ok(lt.notBefore < 10_000_000n && lt.notAfter > 20_000_000n, 'window spans both clocks');
  t.equal(keyPackageLifetime(0).notBefore, 0n);
  // docs/protocol.md: Unix seconds, each bound rounded down from the ms clocks
  t.same(
    keyPackageLifetime(1_700_000_000_999, 1_700_000_100_500),
    { notBefore: 1_699_996_400n, notAfter: 1_700_000_100n + 90n * 86_400n },
    'min(clocks) - 1 h .. max(clocks) + 90 days, in seconds, rounded down',
  );
  t.equal(decodeMessage(p, randomBytes(40)), undefined);
  t.equal(decodeKeyPackageMessage(p, Buffer.alloc(0)), undefined);
});

void t.test('crypto provider: node:crypto by default, the JS one on request', async (t) => {
  t.equal(DEFAULT_MLS_CRYPTO, 'native');
  t.equal(p.crypto, 'native', 'LazyMlsProfile() loads the default');
  const { nativeEd25519 } = await import('../../protocol/native-crypto.js');
  t.equal(p.cs.signature, nativeEd25519, 'the native provider is in use');
  const js = await new LazyMlsProfile({ crypto: 'js' }).get();
  t.equal(js.crypto, 'js');
  t.not(js.cs.signature, nativeEd25519, "ts-mls's default provider is in use");
  t.equal(js.cs.name, CIPHERSUITE_NAME);
  t.equal((await loadMlsProfile({ crypto: 'js' })).crypto, 'js');
});

void t.test('pinned authentication service rejects everything not pinned', async (t) => {
  const a = await newSigningIdentity(p, phoneIdentity('aa'));
  const auth = new PinnedAuthService([a]);
  t.ok(
    await auth.validateCredential(
      { credentialType: 'basic', identity: a.identity },
      a.signaturePublicKey,
    ),
  );
  t.notOk(
    await auth.validateCredential(
      { credentialType: 'basic', identity: a.identity },
      randomBytes(32),
    ),
    'other key',
  );
  t.notOk(
    await auth.validateCredential(
      { credentialType: 'basic', identity: phoneIdentity('bb') },
      a.signaturePublicKey,
    ),
    'other identity',
  );
  t.notOk(
    await auth.validateCredential(
      { credentialType: 'x509', certificates: [] },
      a.signaturePublicKey,
    ),
    'not basic',
  );
  t.equal(auth.rejected, 3);
  auth.unpin(a.identity);
  t.notOk(auth.isPinned(a.identity, a.signaturePublicKey));
});

void t.test(
  'no past epochs: state flat, previous epoch unreadable, config re-attached',
  async (t) => {
    const hubId = await newSigningIdentity(p, hubIdentity('d'));
    const phId = await newSigningIdentity(p, phoneIdentity('ab'));
    const auth = new PinnedAuthService([hubId, phId]);
    const cfg = clientConfig(p.mls, auth);
    const hkp = await newKeyPackage(p, hubId, Date.now());
    let hub = await p.mls.createGroup(
      randomBytes(16),
      hkp.publicPackage,
      hkp.privatePackage,
      [],
      p.cs,
      cfg,
    );
    const pkp = await newKeyPackage(p, phId, Date.now());
    t.ok(decodeKeyPackageMessage(p, encodeKeyPackageMessage(p, pkp.publicPackage)));
    const add = await p.mls.createCommit(
      { state: hub, cipherSuite: p.cs },
      {
        extraProposals: [{ proposalType: 'add', add: { keyPackage: pkp.publicPackage } }],
        ratchetTreeExtension: true,
      },
    );
    hub = forgetPastEpochs(p, add.newState);
    let phone = await p.mls.joinGroup(
      add.welcome!,
      pkp.publicPackage,
      pkp.privatePackage,
      p.mls.emptyPskIndex,
      p.cs,
      undefined,
      undefined,
      cfg,
    );
    t.equal(leafIndexOf(hub, phId.identity), 1);
    t.equal(leafIndexOf(hub, phoneIdentity('zz')), undefined);
    const sizes: number[] = [];
    let lastMsg: Uint8Array | undefined;
    for (let i = 0; i < 8; i++) {
      const app = await p.mls.createApplicationMessage(hub, Buffer.from(`m${i}`), p.cs);
      hub = app.newState;
      lastMsg = encodeMessage(p, {
        version: 'mls10',
        wireformat: 'mls_private_message',
        privateMessage: app.privateMessage,
      });
      const c = await p.mls.createCommit({ state: hub, cipherSuite: p.cs });
      t.ok(c.newState.historicalReceiverData.size > 0, 'ts-mls keeps the past epoch...');
      hub = forgetPastEpochs(p, c.newState);
      t.equal(hub.historicalReceiverData.size, 0, '...we drop it');
      const m = decodeMessage(p, encodeMessage(p, c.commit));
      if (m?.wireformat !== 'mls_private_message') throw new Error('commit not private');
      const r = await p.mls.processPrivateMessage(
        phone,
        m.privateMessage,
        p.mls.emptyPskIndex,
        p.cs,
      );
      phone = forgetPastEpochs(p, r.newState);
      sizes.push(encodeState(p, hub).length);
    }
    t.ok(Math.max(...sizes) - Math.min(...sizes) < 32, `flat state ${sizes.join(',')}`);
    // an application message from the previous epoch is rejected
    const old = decodeMessage(p, lastMsg!);
    if (old?.wireformat !== 'mls_private_message') throw new Error('x');
    await t.rejects(
      p.mls.processPrivateMessage(phone, old.privateMessage, p.mls.emptyPskIndex, p.cs),
      /epoch too old/,
    );
    // decodeState re-attaches our config (ts-mls drops it)
    const back = decodeState(p, encodeState(p, phone), cfg)!;
    t.equal(back.clientConfig.authService, auth);
    t.same(
      Buffer.from(await itemWrapKey(p, back, Buffer.from('i'))),
      Buffer.from(await itemWrapKey(p, hub, Buffer.from('i'))),
      'exporter agrees',
    );
    t.equal(
      decodeState(p, Buffer.concat([encodeState(p, phone), Buffer.from([0])]), cfg),
      undefined,
      'trailing bytes rejected',
    );
  },
);

/** RFC 9420 §8 written out with HMAC-SHA512 (the suite's KDF), independent of ts-mls. */
function expandWithLabel(secret: Uint8Array, label: string, context: Uint8Array, length: number) {
  const vec = (b: Uint8Array): Buffer => {
    // variable-length vector: RFC 9000 varint length prefix (1 byte below 64, 2 bytes below 16384)
    if (b.length < 64) return Buffer.concat([Buffer.from([b.length]), b]);
    return Buffer.concat([Buffer.from([0x40 | (b.length >> 8), b.length & 0xff]), b]);
  };
  const len = Buffer.alloc(2);
  len.writeUInt16BE(length);
  const info = Buffer.concat([len, vec(Buffer.from(`MLS 1.0 ${label}`)), vec(context)]);
  let t = Buffer.alloc(0);
  const out: Buffer[] = [];
  for (let i = 1; Buffer.concat(out).length < length; i++) {
    t = createHmac('sha512', secret)
      .update(Buffer.concat([t, info, Buffer.from([i])]))
      .digest();
    out.push(t);
  }
  return Buffer.concat(out).subarray(0, length);
}

function mlsExporter(exporterSecret: Uint8Array, label: string, context: Uint8Array, n: number) {
  const derived = expandWithLabel(exporterSecret, label, new Uint8Array(0), 64);
  return expandWithLabel(derived, 'exported', createHash('sha512').update(context).digest(), n);
}

void t.test(
  'epoch check: MLS-Exporter("vigil epoch check v1", empty context, length 16) (docs/protocol.md)',
  async (t) => {
    const id = await newSigningIdentity(p, hubIdentity('d'));
    const kp = await newKeyPackage(p, id, Date.now());
    const st = await p.mls.createGroup(
      randomBytes(16),
      kp.publicPackage,
      kp.privatePackage,
      [],
      p.cs,
      clientConfig(p.mls, new PinnedAuthService([id])),
    );
    const check = Buffer.from(await epochCheck(p, st));
    const secret = st.keySchedule.exporterSecret;
    t.equal(check.length, 16);
    t.same(
      check,
      mlsExporter(secret, 'vigil epoch check v1', new Uint8Array(0), 16),
      'the exporter asked for 16 bytes, computed from RFC 9420 by hand',
    );
    t.notSame(
      check,
      mlsExporter(secret, 'vigil epoch check v1', new Uint8Array(0), 32).subarray(0, 16),
      'not the first 16 bytes of a 32-byte export (the length is part of the derivation)',
    );
    const wrap = await exportSecret(p, st, 'vigil item wrap v1', Buffer.alloc(16, 7), 32);
    t.same(
      Buffer.from(wrap),
      mlsExporter(secret, 'vigil item wrap v1', Buffer.alloc(16, 7), 32),
      'the item wrap export follows the same construction',
    );
  },
);
