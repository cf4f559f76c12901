import t from 'tap';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { newIdentity } from '../../../protocol/identity.js';
import { encodeQrPayload } from '../../../protocol/qr-payload.js';
import { renderLabelPng } from '../../../provisioning/label.js';
import { PairingServer } from '../../../firmware/pairing/server.js';
import { HubPairingSession } from '../../../firmware/pairing/session.js';
import type { SessionEvent } from '../../../firmware/pairing/session.js';
import { PairingWindow } from '../../../firmware/pairing/window.js';
import { main } from '../../../bin/cli.js';
import {
  CLAIM_BUDGET,
  MEET_SCHEDULE_MS,
  claimDelayMs,
  meetAtRelay,
  pairCommand,
} from '../../../app/pair/cli.js';
import { DEFAULT_LIMITS } from '../../../relay/limits.js';
import { loadHotspot } from '../../../app/pair/invite.js';
import { startRelay } from '../../../relay/server.js';
import { RelayClient } from '../../../protocol/relay-client.js';
import { SILENT } from '../../../base/logger.js';
import { newDeviceHub } from '../../../dev/fixtures/paired-hub.js';

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
    const { id, derived: d, hub } = await newDeviceHub('vigil-apppair-');
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
    await writeFile(png, await renderLabelPng(encodeQrPayload(id)));
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
    [['--qr', 'x', '--hub', 'h:99999'], /--hub HOST\[:PORT\] must be a port number/],
    [['--qr', 'x', '--home-ssid', 'a'], /go together/],
    [['--qr', 'x', '--timeout', '-1'], /--timeout/],
    [['--qr', 'x', '--password', 'p'], /unknown option --password/],
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
  await writeFile(join(dir, 'empty.png'), (await renderLabelPng('HELLO')).subarray(0, 40));
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

void t.test(
  'vigil app pair --invite: a further phone pairs with what phones add prints',
  async (t) => {
    const { id, derived: d, hub } = await newDeviceHub('vigil-appinvite-');
    const window = new PairingWindow();
    window.open('button');
    const server = new PairingServer({
      window,
      newSession: () =>
        new HubPairingSession({
          responder: new PairingResponder({ hub, devicePsk: { id: d.mlsPskId, secret: d.mlsPsk } }),
          handleConfig: (b) => hub.handleConfig(b),
          networkInRange: async () => true,
        }),
    });
    const { port } = await server.listen('127.0.0.1', 0);
    t.teardown(() => server.close());
    const work = await mkdtemp(join(tmpdir(), 'vigil-appinvite-work-'));
    const hubArg = ['--hub', `127.0.0.1:${port}`];
    const admin = await vigil([
      'app',
      'pair',
      '--qr',
      encodeQrPayload(id),
      ...hubArg,
      '--dir',
      join(work, 'admin'),
    ]);
    t.equal(admin.code, 0, admin.stderr);
    const hotspot = await loadHotspot(new DurableFs(), join(work, 'admin'));
    t.same(hotspot, { ssid: d.ssid, passphrase: d.wpaPassphrase }, 'the admin kept the hotspot');
    // what `vigil app phones add` prints for the invite the hub sent the admin
    const adminId = hub.phones[0]?.phoneId ?? '';
    const inv = await hub.createInvite(adminId);
    const inviteText = JSON.stringify({
      invite: {
        t: 'invite',
        requestId: 'ab12cd34',
        deviceId: hub.deviceId,
        pskId: inv.pskId,
        psk: inv.psk,
        expiresAt: inv.expiresAt,
        hotspot,
      },
    });
    const file = join(work, 'invite.json');
    await writeFile(file, inviteText + '\n');
    const second = await vigil([
      'app',
      'pair',
      '--invite',
      file,
      ...hubArg,
      '--dir',
      join(work, 'b'),
    ]);
    t.equal(second.code, 0, second.stderr);
    t.match(second.stdout, new RegExp(`hotspot ${d.ssid}`));
    t.match(second.stdout, /paired \(MLS\) with hub .* \(by invite\)/);
    t.notOk((second.stdout + second.stderr).includes(inv.psk), 'the invite PSK is never printed');
    t.same(
      hub.phones.map((ph) => ph.admin),
      [true, false],
      'two phones; the invited one is not an admin',
    );
    // single use: the same invite again fails at the hub
    const reuse = await vigil([
      'app',
      'pair',
      '--invite',
      inviteText,
      ...hubArg,
      '--dir',
      join(work, 'c'),
    ]);
    t.equal(reuse.code, 1);
    t.match(reuse.stderr, /unknown or expired pairing PSK id/);
    t.equal(hub.phones.length, 2);
    // bad invites: one line, the field named, the PSK never echoed
    const expired = inviteText.replace(`"expiresAt":${inv.expiresAt}`, '"expiresAt":1000');
    const cases: [string, RegExp][] = [
      [
        expired,
        /^vigil app pair: the invite expired at 1970-01-01T00:00:01\.000Z: ask for a new one/,
      ],
      ['{"invite":{"t":"invite"}}', /^vigil app pair: invalid invite \(invite\.requestId\)/],
      [
        inviteText.replace('"pskId"', '"pskid"'),
        /^vigil app pair: invalid invite \(invite(\.pskId)?\)/,
      ],
      [
        'not json',
        /^vigil app pair: the invite is not the JSON `vigil app phones add` printed \(see vigil app pair --help\)$/,
      ],
    ];
    for (const [text, why] of cases) {
      const r = await vigil(['app', 'pair', '--invite', text, ...hubArg, '--dir', join(work, 'x')]);
      t.equal(r.code, 2, text.slice(0, 40));
      t.match(r.stderr.split('\n')[0], why);
      t.notOk(r.stderr.includes(inv.psk), 'PSK not echoed');
    }
    const both = await vigil(['app', 'pair', '--invite', file, '--qr', 'x']);
    t.match(both.stderr, /either --qr .* or --invite/);
  },
);

void t.test(
  "the phone's claims stay under the relay's lockout while it waits for a slow hub",
  (t) => {
    t.ok(
      CLAIM_BUDGET.failures < DEFAULT_LIMITS.lockoutFailures &&
        CLAIM_BUDGET.windowMs >= DEFAULT_LIMITS.lockoutWindowMs,
      'the budget is below the relay default',
    );
    // every claim fails (the hub is not there for an hour): when does the phone ask?
    const failedAt: number[] = [];
    let now = 0;
    for (let i = 0; now < 3600_000; i++) {
      now += claimDelayMs(i, failedAt, now);
      failedAt.push(now);
    }
    let worst = 0;
    for (const start of failedAt) {
      const n = failedAt.filter((x) => x >= start && x < start + DEFAULT_LIMITS.lockoutWindowMs);
      worst = Math.max(worst, n.length);
    }
    t.equal(worst, CLAIM_BUDGET.failures, 'at most the budget in any lockout window');
    t.ok(worst < DEFAULT_LIMITS.lockoutFailures, 'never locked out');
    t.same(
      failedAt.slice(0, 5),
      [8000, 16_000, 28_000, 44_000, 68_000],
      'the first minutes follow the schedule (a hub that comes soon is met soon)',
    );
    t.equal(claimDelayMs(0, [], 0, MEET_SCHEDULE_MS), MEET_SCHEDULE_MS[0]);
    t.end();
  },
);
