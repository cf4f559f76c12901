/**
 * The frame server with the REAL pairing content: MlsHub + PairingResponder on
 * the hub, PairingInitiator + PairingClient on the phone, over TCP loopback.
 */
import t from 'tap';
import { mkdtemp, readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { PairingInitiator } from '../../../app/e2ee/pairing-initiator.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import type { ExternalPsk, MlsProfile } from '../../../protocol/mls-profile.js';
import { deriveIdentity, newIdentity } from '../../../protocol/identity.js';
import { PairingServer } from '../../../firmware/pairing/server.js';
import { HubPairingSession } from '../../../firmware/pairing/session.js';
import type { SessionEvent } from '../../../firmware/pairing/session.js';
import { MAX_FAILED_ATTEMPTS, PairingWindow } from '../../../firmware/pairing/window.js';
import { PairingClient, PairClientError } from '../../../app/pair/client.js';
import { encodeWireFrame } from '../../../protocol/pairing-transport.js';
import { b64 } from '../../../protocol/e2ee-frames.js';
import { newDeviceHub } from '../../../dev/fixtures/paired-hub.js';

let p: MlsProfile;
t.before(async () => {
  p = await loadMlsProfile();
});

async function setup(
  opts: { idleTimeoutMs?: number; networkInRange?: (ssid: string) => Promise<boolean> } = {},
) {
  const { id, derived: d, devicePsk, hub, dir: hubDir } = await newDeviceHub('vigil-pair-hub-', p);
  const window = new PairingWindow();
  window.open('first-boot');
  const events: SessionEvent[] = [];
  const server = new PairingServer({
    window,
    newSession: () =>
      new HubPairingSession({
        responder: new PairingResponder({ hub, devicePsk }),
        handleConfig: (b) => hub.handleConfig(b),
        networkInRange: opts.networkInRange ?? (async (ssid) => ssid === 'home-net'),
      }),
    ...(opts.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
  });
  server.on('session', (e) => events.push(e));
  const addr = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.close());
  const attempts: { succeeded: boolean; code: string }[] = [];
  server.on('attempt', (r) => attempts.push(r));
  const settled = (n: number) =>
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (attempts.length >= n) resolve();
        else setTimeout(check, 10);
      };
      check();
    });
  const phone = async (psk: ExternalPsk) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-pair-phone-'));
    return { dir, ini: new PairingInitiator({ dir, fs: new DurableFs(), profile: p, psk }) };
  };
  return {
    id,
    d,
    devicePsk,
    hub,
    hubDir,
    window,
    server,
    port: addr.port,
    events,
    attempts,
    settled,
    phone,
  };
}

void t.test(
  'right PSK: MLS join over the frame server, then Wi-Fi credentials over the config group',
  async (t) => {
    const s = await setup();
    const c = await PairingClient.connect('127.0.0.1', s.port);
    const { ini } = await s.phone(s.devicePsk);
    const phone = await c.pair(ini);
    t.ok(phone, 'phone paired');
    t.equal(s.hub.phones.length, 1, 'hub knows one phone');
    // a network the hub cannot see: clear answer, connection stays up for a retry
    await t.rejects(c.sendCredentials(phone, 'elsewhere', 'password123'), {
      code: 'EPAIR_NETWORK_NOT_FOUND',
      message: /cannot see a network named "elsewhere"/,
    });
    const token = await c.sendCredentials(phone, 'home-net', 'correct horse battery');
    t.match(token, /^[0-9a-f]{32}$/);
    await s.settled(1);
    t.same(s.attempts, [{ succeeded: true, code: 'OK', message: 'credentials accepted' }]);
    const creds = s.events.find((e) => e.type === 'credentials');
    t.same(creds?.type === 'credentials' ? creds.credentials : undefined, {
      ssid: 'home-net',
      passphrase: 'correct horse battery',
      pairingToken: token,
    });
    t.equal(s.window.state.failures, 0);
    c.close();
  },
);

void t.test('a hub that cannot scan still tries the network (the join decides)', async (t) => {
  const s = await setup({
    networkInRange: () => Promise.reject(new Error('iw: Operation not supported (-95)')),
  });
  const c = await PairingClient.connect('127.0.0.1', s.port);
  const phone = await c.pair((await s.phone(s.devicePsk)).ini);
  const token = await c.sendCredentials(phone, 'unseen-net', 'password123');
  t.match(token, /^[0-9a-f]{32}$/);
  await s.settled(1);
  t.same(s.attempts[0]?.succeeded, true);
  c.close();
});

void t.test(
  'the idle timeout does not fire while the hub itself is busy (a long scan)',
  async (t) => {
    const s = await setup({
      idleTimeoutMs: 1500,
      networkInRange: () =>
        new Promise((r) =>
          setTimeout(() => {
            r(true);
          }, 4000),
        ),
    });
    const c = await PairingClient.connect('127.0.0.1', s.port);
    const phone = await c.pair((await s.phone(s.devicePsk)).ini);
    const token = await c.sendCredentials(phone, 'home-net', 'password123');
    t.match(token, /^[0-9a-f]{32}$/);
    await s.settled(1);
    t.same(s.attempts[0]?.succeeded, true);
    c.close();
  },
);

void t.test(
  'wrong PSK: the MLS join fails, counts as a failed attempt, leaves no state',
  async (t) => {
    const s = await setup();
    const before = await readdir(s.hubDir, { recursive: true });
    // same PSK id (the label's derivation) but a different secret: only the MLS key schedule can tell
    const wrong: ExternalPsk = { id: s.devicePsk.id, secret: new Uint8Array(32).fill(7) };
    const c = await PairingClient.connect('127.0.0.1', s.port);
    const { ini, dir } = await s.phone(wrong);
    const err = await c.pair(ini).catch((e: unknown) => e);
    t.ok(err instanceof PairClientError, String(err));
    await s.settled(1);
    t.equal(s.attempts[0]?.succeeded, false);
    t.equal(s.window.state.failures, 1);
    t.equal(s.hub.phones.length, 0);
    t.same(await readdir(s.hubDir, { recursive: true }), before, 'no hub file written');
    const phoneFiles = (await readdir(dir, { recursive: true })).filter(
      (f) => f.endsWith('.json') || f.endsWith('.state'),
    );
    t.same(phoneFiles, [], 'no phone state either');
  },
);

void t.test('20 failed attempts close the window; the 21st is refused', async (t) => {
  const s = await setup();
  const other = deriveIdentity(newIdentity().secret, s.id.deviceId); // a different label
  for (let i = 0; i < MAX_FAILED_ATTEMPTS; i++) {
    const c = await PairingClient.connect('127.0.0.1', s.port);
    const { ini } = await s.phone({ id: other.mlsPskId, secret: other.mlsPsk });
    await t.rejects(c.pair(ini), PairClientError);
    await s.settled(i + 1);
  }
  t.equal(s.window.state.failures, MAX_FAILED_ATTEMPTS);
  t.notOk(s.window.isOpen);
  const c = await PairingClient.connect('127.0.0.1', s.port);
  const { ini } = await s.phone(s.devicePsk);
  const err = await c.pair(ini).catch((e: unknown) => e);
  t.match(
    err,
    { code: 'EPAIR_REFUSED', hubCode: 'EWINDOW_FAILURES' },
    'even the right PSK is refused now',
  );
  t.equal(s.hub.phones.length, 0);
  s.window.open('button');
  const c2 = await PairingClient.connect('127.0.0.1', s.port);
  const ok = await c2.pair((await s.phone(s.devicePsk)).ini);
  t.ok(ok, 'a button press reopens the window');
  c2.close();
});

void t.test('a pairing killed midway leaves no state and counts as failed', async (t) => {
  const s = await setup();
  const before = await readdir(s.hubDir, { recursive: true });
  const c = await PairingClient.connect('127.0.0.1', s.port);
  const { ini } = await s.phone(s.devicePsk);
  const { decodeFrame, encodeFrame } = await import('../../../protocol/e2ee-frames.js');
  c.send({ kind: 'pairing', payload: encodeFrame(await ini.start()) });
  // hello-ack, then one key package, then the phone vanishes
  const ack = await c.next();
  const d = decodeFrame(ack.payload);
  if (!d.ok) throw new Error(d.reason);
  for (const f of await ini.handle(d.value)) c.send({ kind: 'pairing', payload: encodeFrame(f) });
  await c.next(); // welcome for the first group: the hub now holds a half-made group
  c.close();
  await s.settled(1);
  t.equal(s.attempts[0]?.succeeded, false);
  t.equal(s.hub.phones.length, 0);
  t.same(await readdir(s.hubDir, { recursive: true }), before, 'nothing durable');
  // and the window still lets the real phone in afterwards
  const c2 = await PairingClient.connect('127.0.0.1', s.port);
  t.ok(await c2.pair((await s.phone(s.devicePsk)).ini));
  c2.close();
});

void t.test('transport limits: idle timeout, busy, oversize and bad version frames', async (t) => {
  const s = await setup({ idleTimeoutMs: 300 });
  const raw = (bytes?: Buffer) =>
    new Promise<Buffer>((resolve) => {
      const sock = connect({ host: '127.0.0.1', port: s.port });
      const got: Buffer[] = [];
      sock.on('data', (b) => got.push(b));
      sock.on('close', () => {
        resolve(Buffer.concat(got));
      });
      sock.on('error', () => undefined);
      if (bytes) sock.write(bytes);
    });
  const text = (b: Buffer) => b.subarray(6).toString();
  t.match(text(await raw()), /ETIMEOUT_IDLE/);
  const big = Buffer.alloc(6);
  big.writeUInt32BE(10 * 1024 * 1024, 0);
  t.match(text(await raw(big)), /EFRAME_TOO_LARGE/);
  t.match(text(await raw(Buffer.from([0, 0, 0, 2, 9, 1]))), /EFRAME_VERSION/);
  t.match(
    text(await raw(encodeWireFrame({ kind: 'pairing', payload: Buffer.from('{"t":"nope"}') }))),
    /EFRAME_PAYLOAD/,
  );
  t.match(
    text(await raw(encodeWireFrame({ kind: 'status', payload: Buffer.from('{}') }))),
    /EFRAME_UNEXPECTED/,
  );
  // busy: hold one connection open, a second is refused
  const hold = connect({ host: '127.0.0.1', port: s.port });
  await new Promise((r) => hold.once('connect', r));
  await new Promise((r) => setTimeout(r, 50));
  t.match(text(await raw()), /EBUSY/);
  hold.destroy();
  await s.settled(6);
  t.equal(s.window.state.failures, 6, 'each failed connection counted (refusals are not attempts)');
});

void t.test('the relay a phone chooses: refused schemes, then accepted', async (t) => {
  const s = await setup();
  const c = await PairingClient.connect('127.0.0.1', s.port);
  const phone = await c.pair((await s.phone(s.devicePsk)).ini);
  const base = { ssid: 'home-net', passphrase: 'password123', pairingToken: 'b'.repeat(32) };
  // sealed by hand: the companion would refuse these itself
  for (const [relayUrl, why] of [
    ['http://relay.example.net', /relayUrl must be https \(http only to a loopback or link-local/],
    ['ftp://relay.example.net', /relayUrl must be https, not ftp/],
    ['file:///etc/shadow', /relayUrl must be https, not file/],
  ] as const) {
    const body = Buffer.from(JSON.stringify({ ...base, relayUrl }));
    c.send({
      kind: 'config',
      payload: await phone.send({ t: 'app', topic: 'wifi-credentials', body: b64(body) }),
    });
    await t.rejects(c.next(), { code: 'EPAIR_PROTOCOL', hubCode: 'ERELAY_URL', message: why });
  }
  t.equal(s.events.filter((e) => e.type === 'credentials').length, 0, 'nothing accepted');
  const token = await c.sendCredentials(phone, 'home-net', 'password123', undefined, {
    url: 'https://my-relay.example/',
    enrollToken: 'mine',
  });
  await s.settled(1);
  t.same(s.attempts[0]?.succeeded, true, 'the same connection could correct itself');
  const creds = s.events.find((e) => e.type === 'credentials');
  t.same(creds?.type === 'credentials' ? creds.credentials : undefined, {
    ...base,
    pairingToken: token,
    relayUrl: 'https://my-relay.example',
    relayEnrollToken: 'mine',
  });
  c.close();
});
