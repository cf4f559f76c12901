import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { E2eePhone } from '../../../app/e2ee/phone.js';
import { b64, type PairingFrame } from '../../../protocol/e2ee-frames.js';
import { MlsHub } from '../../../firmware/mls/hub.js';
import {
  KEY_PACKAGE_LIFETIME_MS,
  LIFETIME_ALLOWANCE_MS,
  acceptedLifetimeBounds,
  encodeKeyPackageMessage,
  loadMlsProfile,
  newKeyPackage,
  newSigningIdentity,
  phoneIdentity,
} from '../../../protocol/mls-profile.js';
import {
  DEVICE_ID,
  newDevicePsk,
  openHub,
  pair,
  tempDir,
} from '../../../dev/fixtures/paired-hub.js';

const p = await loadMlsProfile();

function groupFiles(hubDir: string): string[] {
  return readdirSync(join(hubDir, 'groups')).filter((f) => f.endsWith('.state'));
}

void t.test('pairing over the frames, onPaired gives the config channel', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const psk = newDevicePsk();
  const synced: number[] = [];
  let paired: { phoneId: string } | undefined;
  const responder = new PairingResponder({
    hub,
    devicePsk: psk,
    onTimeSync: (ms) => synced.push(ms),
    onPaired: (ph) => {
      paired = ph;
    },
  });
  const { PairingInitiator } = await import('../../../app/e2ee/pairing-initiator.js');
  const ini = new PairingInitiator({
    dir: join(root, 'phone'),
    fs: new DurableFs(),
    profile: p,
    psk,
  });
  let toHub: PairingFrame[] = [await ini.start()];
  while (!ini.finished) {
    const back: PairingFrame[] = [];
    for (const f of toHub) back.push(...(await responder.handle(f)));
    toHub = [];
    for (const f of back) toHub.push(...(await ini.handle(f)));
  }
  t.equal(responder.phase, 'done');
  t.equal(synced.length, 1, 'time sync reported');
  t.equal(paired?.phoneId, ini.phoneId);
  t.equal(groupFiles(join(root, 'hub')).length, 5);
  // Wi-Fi credentials travel over the config group
  const phone = ini.phone!;
  const out = await (
    paired as unknown as {
      config: { receive: (b: Uint8Array) => Promise<{ message: { t: string; topic?: string } }> };
    }
  ).config.receive(
    await phone.send({
      t: 'app',
      topic: 'wifi-credentials',
      body: b64(Buffer.from('{"ssid":"home"}')),
    }),
  );
  t.equal(out.message.t, 'app');
  t.equal(out.message.topic, 'wifi-credentials');
  t.same(await responder.handle({ t: 'confirm', mac: '' }), [
    { t: 'error', code: 'EUNEXPECTED_FRAME', message: 'pairing already done' },
  ]);
});

void t.test('wrong PSK: the phone cannot join, nothing survives on either side', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const devicePsk = newDevicePsk();
  const wrong = { id: devicePsk.id, secret: randomBytes(32) };
  const r = await pair({ p, hub, devicePsk, phonePsk: wrong, phoneDir: join(root, 'phone') });
  t.equal(r.initiator.failure?.code, 'EPSK_MISMATCH', 'phone: wrong pairing secret');
  t.equal(r.responder.failure?.code, 'EPEER_ABORTED', 'hub: phone aborted');
  t.equal(r.responder.phase, 'failed');
  t.same(groupFiles(join(root, 'hub')), [], 'no hub group state');
  t.equal(hub.phones.length, 0);
  t.equal(
    await E2eePhone.open({ dir: join(root, 'phone'), fs: new DurableFs(), profile: p }),
    undefined,
    'no phone state',
  );
  // a phone that lies in its confirm is caught by the hub
  const liar = await pair({
    p,
    hub,
    devicePsk,
    phoneDir: join(root, 'phone2'),
    tamper: (f) => (f.t === 'confirm' ? { t: 'confirm', mac: b64(randomBytes(32)) } : f),
  });
  t.equal(liar.responder.failure?.code, 'EPSK_MISMATCH');
  t.same(groupFiles(join(root, 'hub')), []);
  t.equal(liar.phone, undefined);
  t.equal(
    await E2eePhone.open({ dir: join(root, 'phone2'), fs: new DurableFs(), profile: p }),
    undefined,
  );
});

void t.test('unknown PSK id, version mismatch, unexpected frames', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const devicePsk = newDevicePsk();
  const unknown = await pair({
    p,
    hub,
    devicePsk,
    phonePsk: newDevicePsk(),
    phoneDir: join(root, 'a'),
  });
  t.equal(unknown.responder.failure?.code, 'EPSK_UNKNOWN');
  const v = await pair({ p, hub, devicePsk, versions: [99], phoneDir: join(root, 'b') });
  t.equal(v.responder.failure?.code, 'EVERSION');
  t.match(v.responder.failure?.message, /no common protocol version/);
  const resp = new PairingResponder({ hub, devicePsk });
  const out = await resp.handle({ t: 'confirm', mac: '' });
  t.equal(out[0]?.t === 'error' ? out[0].code : '', 'EUNEXPECTED_FRAME');
  const r2 = new PairingResponder({ hub, devicePsk });
  r2.abort('window closed');
  t.equal(r2.failure?.code, 'EABORTED');
});

void t.test('foreign key package is rejected', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const devicePsk = newDevicePsk();
  const phoneId = randomBytes(16).toString('hex');
  const me = await newSigningIdentity(p, phoneIdentity(phoneId));
  const other = await newSigningIdentity(p, phoneIdentity(phoneId)); // same identity, other key
  const resp = new PairingResponder({ hub, devicePsk });
  const ack = await resp.handle({
    t: 'hello',
    versions: [1],
    phoneTime: Date.now(),
    phoneId,
    signaturePublicKey: b64(me.signaturePublicKey),
    pskId: b64(devicePsk.id),
  });
  t.equal(ack[0]?.t, 'hello-ack');
  const kp = await newKeyPackage(p, other, Date.now());
  const out = await resp.handle({
    t: 'key-package',
    group: 'motion',
    keyPackage: b64(encodeKeyPackageMessage(p, kp.publicPackage)),
  });
  t.equal(out[0]?.t === 'error' ? out[0].code : '', 'EFOREIGN_KEY_PACKAGE');
  t.same(groupFiles(join(root, 'hub')), []);
  // garbage key package
  const resp2 = new PairingResponder({ hub, devicePsk });
  await resp2.handle({
    t: 'hello',
    versions: [1],
    phoneTime: Date.now(),
    phoneId,
    signaturePublicKey: b64(me.signaturePublicKey),
    pskId: b64(devicePsk.id),
  });
  const bad = await resp2.handle({
    t: 'key-package',
    group: 'motion',
    keyPackage: b64(randomBytes(50)),
  });
  t.equal(bad[0]?.t === 'error' ? bad[0].code : '', 'EKEY_PACKAGE_INVALID');
  // wrong group order
  const resp3 = new PairingResponder({ hub, devicePsk });
  await resp3.handle({
    t: 'hello',
    versions: [1],
    phoneTime: Date.now(),
    phoneId,
    signaturePublicKey: b64(me.signaturePublicKey),
    pskId: b64(devicePsk.id),
  });
  const mine = await newKeyPackage(p, me, Date.now());
  const order = await resp3.handle({
    t: 'key-package',
    group: 'config',
    keyPackage: b64(encodeKeyPackageMessage(p, mine.publicPackage)),
  });
  t.equal(order[0]?.t === 'error' ? order[0].code : '', 'EUNEXPECTED_FRAME');
});

void t.test('an already paired phone id is refused', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const devicePsk = newDevicePsk();
  const first = await pair({ p, hub, devicePsk, phoneDir: join(root, 'a') });
  const resp = new PairingResponder({ hub, devicePsk });
  const out = await resp.handle({
    t: 'hello',
    versions: [1],
    phoneTime: 0,
    phoneId: first.phone!.phoneId,
    signaturePublicKey: b64(randomBytes(32)),
    pskId: b64(devicePsk.id),
  });
  t.equal(out[0]?.t === 'error' ? out[0].code : '', 'EPHONE_EXISTS');
});

void t.test('key package lifetime: both bounds, just inside and just outside', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  // whole seconds, so the bounds below are exact; near the real time because
  // ts-mls also checks the lifetime against Date.now()
  const HUB = Math.floor(Date.now() / 1000) * 1000;
  const PHONE = HUB - 10 * 60_000; // the phone's clock lags by 10 minutes
  const hub = await MlsHub.open({
    dir: join(root, 'hub'),
    fs: new DurableFs(),
    deviceId: DEVICE_ID,
    profile: p,
    now: () => HUB,
  });
  const devicePsk = newDevicePsk();
  const phoneId = randomBytes(16).toString('hex');
  const me = await newSigningIdentity(p, phoneIdentity(phoneId));
  const minNotBefore = BigInt((PHONE - 3600_000 - LIFETIME_ALLOWANCE_MS) / 1000);
  const maxNotAfter = BigInt((HUB + KEY_PACKAGE_LIFETIME_MS + LIFETIME_ALLOWANCE_MS) / 1000);
  t.same(acceptedLifetimeBounds(HUB, PHONE), { minNotBefore, maxNotAfter });
  const attempt = async (notBefore: bigint, notAfter: bigint): Promise<string> => {
    const resp = new PairingResponder({ hub, devicePsk });
    await resp.handle({
      t: 'hello',
      versions: [1],
      phoneTime: PHONE,
      phoneId,
      signaturePublicKey: b64(me.signaturePublicKey),
      pskId: b64(devicePsk.id),
    });
    const kp = await p.mls.generateKeyPackageWithKey(
      { credentialType: 'basic', identity: me.identity },
      p.mls.defaultCapabilities(),
      { notBefore, notAfter },
      [],
      { signKey: me.signaturePrivateKey, publicKey: me.signaturePublicKey },
      p.cs,
    );
    const out = await resp.handle({
      t: 'key-package',
      group: 'motion',
      keyPackage: b64(encodeKeyPackageMessage(p, kp.publicPackage)),
    });
    resp.abort();
    const f = out[0];
    return f?.t === 'error' ? `${f.code}: ${f.message}` : (f?.t ?? 'nothing');
  };
  t.equal(await attempt(minNotBefore, maxNotAfter), 'welcome', 'both bounds just inside');
  t.match(
    await attempt(minNotBefore - 1n, maxNotAfter),
    /^EKEY_PACKAGE_LIFETIME: motion: .*notBefore/,
  );
  t.match(
    await attempt(minNotBefore, maxNotAfter + 1n),
    /^EKEY_PACKAGE_LIFETIME: motion: .*notAfter/,
  );
  t.match(
    await attempt(0n, 2n ** 64n - 1n),
    /^EKEY_PACKAGE_LIFETIME/,
    'the widest lifetime is refused',
  );
  const now = BigInt(HUB / 1000);
  t.match(
    await attempt(now + 1n, maxNotAfter),
    /^EKEY_PACKAGE_LIFETIME: .*does not contain now/,
    'not yet valid',
  );
  t.same(groupFiles(join(root, 'hub')), [], 'nothing written');
});
