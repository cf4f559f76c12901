import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { E2eePhone } from '../../../app/e2ee/phone.js';
import { b64, type PairingFrame } from '../../../protocol/e2ee-frames.js';
import {
  encodeKeyPackageMessage,
  loadMlsProfile,
  newKeyPackage,
  newSigningIdentity,
  phoneIdentity,
} from '../../../protocol/mls-profile.js';
import { newDevicePsk, openHub, pair, tempDir } from '../../../dev/fixtures/paired-hub.js';

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
