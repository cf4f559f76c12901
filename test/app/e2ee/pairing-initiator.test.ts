import t from 'tap';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { PairingInitiator } from '../../../app/e2ee/pairing-initiator.js';
import { E2eePhone } from '../../../app/e2ee/phone.js';
import { MlsHub } from '../../../firmware/mls/hub.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { b64, type PairingFrame } from '../../../protocol/e2ee-frames.js';
import { LIFETIME_ALLOWANCE_MS, loadMlsProfile } from '../../../protocol/mls-profile.js';
import {
  DEVICE_ID,
  newDevicePsk,
  openHub,
  pair,
  tempDir,
} from '../../../dev/fixtures/paired-hub.js';

const p = await loadMlsProfile();

void t.test('initiator: happy path persists only after paired', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const hub = await openHub(p, join(root, 'hub'));
  const r = await pair({ p, hub, devicePsk: newDevicePsk(), phoneDir: join(root, 'phone') });
  t.ok(r.initiator.finished);
  t.equal(r.phone?.deviceId, hub.deviceId);
  t.same(
    r.transcript.map((f) => f.t),
    [
      'hello',
      'hello-ack',
      ...Array.from({ length: 5 }, () => ['key-package', 'welcome']).flat(),
      'confirm',
      'paired',
    ],
  );
});

void t.test('initiator: unexpected frames, hub errors, abort', async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  const mk = () =>
    new PairingInitiator({
      dir: join(root, 'x'),
      fs: new DurableFs(),
      profile: p,
      psk: newDevicePsk(),
    });
  const a = mk();
  t.same(
    (await a.handle({ t: 'paired', phoneId: 'a1b2c3d4e5f60718', admin: true }))[0]?.t,
    'error',
    'before start',
  );
  const b = mk();
  await b.start();
  const out = await b.handle({ t: 'welcome', group: 'motion', groupId: '', welcome: '' });
  t.equal(out[0]?.t === 'error' ? out[0].code : '', 'EUNEXPECTED_FRAME');
  t.ok(b.finished);
  const c = mk();
  await c.start();
  t.same(
    await c.handle({ t: 'error', code: 'EVERSION', message: 'no' }),
    [],
    'no reply to a peer error',
  );
  t.equal(c.failure?.code, 'EPEER_ABORTED');
  const d = mk();
  await d.start();
  const v = await d.handle({
    t: 'hello-ack',
    version: 7,
    hubTime: 0,
    deviceId: 'd',
    signaturePublicKey: b64(Buffer.alloc(32)),
    groups: ['motion', 'thumbnail', 'livestream', 'config', 'notification'],
  });
  t.equal(v[0]?.t === 'error' ? v[0].code : '', 'EVERSION');
  const e = mk();
  await e.start();
  e.abort('user cancelled');
  t.equal(e.failure?.code, 'EABORTED');
  t.equal(e.phone, undefined);
});

void t.test("initiator: the hub's key package lifetime, both bounds", async (t) => {
  const root = tempDir();
  t.teardown(() => {
    rmSync(root, { recursive: true, force: true });
  });
  // Phone and hub agree at hello; the hub's clock then jumps before it makes
  // its key package, so its lifetime leaves the window the phone computed.
  const PHONE = Math.floor(Date.now() / 1000) * 1000;
  const run = async (name: string, jumpMs: number): Promise<string> => {
    let hubClock = PHONE;
    const hub = await MlsHub.open({
      dir: join(root, name, 'hub'),
      fs: new DurableFs(),
      deviceId: DEVICE_ID,
      profile: p,
      now: () => hubClock,
    });
    const devicePsk = newDevicePsk();
    const responder = new PairingResponder({ hub, devicePsk });
    const ini = new PairingInitiator({
      dir: join(root, name, 'phone'),
      fs: new DurableFs(),
      profile: p,
      psk: devicePsk,
      now: () => PHONE,
    });
    let toHub: PairingFrame[] = [await ini.start()];
    while (!ini.finished) {
      const back: PairingFrame[] = [];
      for (const f of toHub) back.push(...(await responder.handle(f)));
      if (back.some((f) => f.t === 'hello-ack')) hubClock = PHONE + jumpMs;
      toHub = [];
      for (const f of back) toHub.push(...(await ini.handle(f)));
    }
    return ini.failure === undefined ? 'paired' : `${ini.failure.code}: ${ini.failure.message}`;
  };
  const A = LIFETIME_ALLOWANCE_MS;
  t.equal(await run('late-in', A), 'paired', 'notAfter just inside');
  t.match(await run('late-out', A + 1000), /^EKEY_PACKAGE_LIFETIME: motion: .*notAfter/);
  t.equal(await run('early-in', -A), 'paired', 'notBefore just inside');
  t.match(await run('early-out', -A - 1000), /^EKEY_PACKAGE_LIFETIME: motion: .*notBefore/);
  t.equal(
    await E2eePhone.open({ dir: join(root, 'late-out', 'phone'), fs: new DurableFs(), profile: p }),
    undefined,
    'a refused pairing leaves no phone state',
  );
});
