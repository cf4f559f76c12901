import t from 'tap';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { PairingInitiator } from '../../../app/e2ee/pairing-initiator.js';
import { b64 } from '../../../protocol/e2ee-frames.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import { newDevicePsk, openHub, pair, tempDir } from '../../../dev/fixtures/paired-hub.js';

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
