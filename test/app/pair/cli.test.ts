import t from 'tap';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { MlsHub } from '../../../firmware/mls/hub.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import { deriveIdentity, newIdentity } from '../../../protocol/identity.js';
import { encodeQrPayload } from '../../../protocol/qr-payload.js';
import { renderLabelPng } from '../../../provisioning/label.js';
import { PairingServer } from '../../../firmware/pairing/server.js';
import { HubPairingSession } from '../../../firmware/pairing/session.js';
import type { SessionEvent } from '../../../firmware/pairing/session.js';
import { PairingWindow } from '../../../firmware/pairing/window.js';
import { main } from '../../../bin/cli.js';
import { meetAtRelay, pairCommand } from '../../../app/pair/cli.js';
import { startRelay } from '../../../relay/server.js';
import { RelayClient } from '../../../protocol/relay-client.js';
import { SILENT } from '../../../base/logger.js';

async function vigil(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, 'test', {
    env: {},
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
  });
  return { code, stdout, stderr };
}

void t.test(
  'vigil app pair --qr <label image>: pairs and sends Wi-Fi settings; wrong label fails',
  async (t) => {
    const p = await loadMlsProfile();
    const id = newIdentity();
    const d = deriveIdentity(id.secret, id.deviceId);
    const hub = await MlsHub.open({
      dir: await mkdtemp(join(tmpdir(), 'vigil-apppair-')),
      fs: new DurableFs(),
      deviceId: id.deviceId,
      profile: p,
    });
    const window = new PairingWindow();
    window.open('first-boot');
    const events: SessionEvent[] = [];
    const server = new PairingServer({
      window,
      newSession: () =>
        new HubPairingSession({
          responder: new PairingResponder({ hub, devicePsk: { id: d.mlsPskId, secret: d.mlsPsk } }),
          handleConfig: (b) => hub.handleConfig(b),
          networkInRange: async () => true,
        }),
    });
    server.on('session', (e) => events.push(e));
    const { port } = await server.listen('127.0.0.1', 0);
    t.teardown(() => server.close());
    const work = await mkdtemp(join(tmpdir(), 'vigil-apppair-work-'));
    const png = join(work, 'label.png');
    await writeFile(png, renderLabelPng(encodeQrPayload(id), id.deviceId));
    await writeFile(join(work, 'pw'), 'home secret 123\n');

    const wrong = newIdentity();
    const bad = await vigil([
      'app',
      'pair',
      '--qr',
      encodeQrPayload({ ...wrong, deviceId: id.deviceId }),
      '--hub',
      `127.0.0.1:${port}`,
      '--dir',
      join(work, 'phone-wrong'),
    ]);
    t.equal(bad.code, 1);
    t.match(bad.stderr, /pairing failed|hub:/);

    const r = await vigil([
      'app',
      'pair',
      '--qr',
      png,
      '--hub',
      `127.0.0.1:${port}`,
      '--dir',
      join(work, 'phone'),
      '--home-ssid',
      'home-net',
      '--home-password-file',
      join(work, 'pw'),
    ]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`hotspot ${d.ssid}`));
    t.match(r.stdout, /paired \(MLS\)/);
    t.match(r.stdout, /joining "home-net"/);
    t.notMatch(r.stdout + r.stderr, /home secret 123/, 'password never printed');
    t.notMatch(
      r.stdout + r.stderr,
      new RegExp(d.wpaPassphrase),
      'hotspot passphrase never printed',
    );
    const token = (await readFile(join(work, 'phone', 'pairing-token'), 'utf8')).trim();
    const creds = events.find((e) => e.type === 'credentials');
    t.same(creds?.type === 'credentials' ? creds.credentials : undefined, {
      ssid: 'home-net',
      passphrase: 'home secret 123',
      pairingToken: token,
    });
    t.equal(hub.phones.length, 1);

    // again with the same state: only the Wi-Fi settings are sent
    const again = await vigil([
      'app',
      'pair',
      '--qr',
      png,
      '--hub',
      `127.0.0.1:${port}`,
      '--dir',
      join(work, 'phone'),
      '--home-ssid',
      'home-net',
      '--home-password-file',
      join(work, 'pw'),
    ]);
    t.equal(again.code, 0, again.stderr);
    t.match(again.stdout, /already paired/);
    t.equal(hub.phones.length, 1);
  },
);

void t.test('usage errors', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /--qr/],
    [['--qr', 'hello'], /not a Vigil pairing code.*\[EQR_FORMAT\]/],
    [['--qr', 'x', '--hub', 'h:99999'], /bad port/],
    [['--qr', 'x', '--home-ssid', 'a'], /go together/],
    [['--qr', 'x', '--timeout', '-1'], /--timeout/],
    [['--qr', 'x', '--password', 'p'], /Unknown option/],
    [['--qr', 'x', '--relay', 'http://r:1'], /--relay needs --home-ssid/],
    [
      ['--qr', 'x', '--home-ssid', 'a', '--home-password-file', 'f', '--relay', 'ftp://r'],
      /not an http\(s\) URL/,
    ],
  ];
  for (const [argv, msg] of cases) {
    const r = await vigil(['app', 'pair', ...argv]);
    t.equal(r.code, 2, argv.join(' '));
    t.match(r.stderr, msg);
  }
  const dir = await mkdtemp(join(tmpdir(), 'vigil-apppair-'));
  await writeFile(
    join(dir, 'empty.png'),
    renderLabelPng('HELLO', 'AAAAAAAAAAAAAAAA').subarray(0, 40),
  );
  const r = await vigil(['app', 'pair', '--qr', join(dir, 'empty.png')]);
  t.equal(r.code, 2);
  t.match(r.stderr, /no QR code could be read|expected one QR code/);
  t.match(pairCommand.usage, /--home-password-file/);
});

void t.test(
  'meeting the hub at the relay: waits for its offer, then holds a phone account',
  async (t) => {
    const relay = await startRelay({
      dataDir: await mkdtemp(join(tmpdir(), 'vigil-apppair-relay-')),
      logger: SILENT,
    });
    t.teardown(() => relay.close());
    const anon = new RelayClient({ url: relay.url });
    const dev = await anon.registerDevice('ABCDEFGHIJKLMNOP');
    const hub = anon.withToken(dev.token);
    const token = 'pairing-token-0123456789abcdef';
    // the phone asks first (the hub is still joining its home network)
    const met = meetAtRelay(relay.url, token, 20_000, [50]);
    await new Promise((r) => setTimeout(r, 200));
    await hub.offerRendezvous(token);
    const acct = await met;
    t.equal(acct.deviceId, 'ABCDEFGHIJKLMNOP');
    t.equal(acct.url, relay.url);
    t.same(
      (await hub.phones()).map((p) => p.phoneId),
      [acct.phoneId],
      'the hub sees the phone',
    );
    // a token already used is refused at once (no waiting out the deadline)
    await t.rejects(meetAtRelay(relay.url, token, 60_000, [50]), {
      code: 'EPAIR_RELAY',
      message: /did not meet us/,
    });
    // a token never offered: retried until the deadline
    await t.rejects(meetAtRelay(relay.url, 'never-offered-token-000000', 300, [50]), {
      code: 'EPAIR_RELAY',
    });
    // nothing within the deadline at all
    await t.rejects(meetAtRelay(relay.url, token, 10), { message: /timed out/ });
    // no relay at all
    await t.rejects(meetAtRelay('http://127.0.0.1:9', token, 200, [50]), { code: 'EPAIR_RELAY' });
  },
);
