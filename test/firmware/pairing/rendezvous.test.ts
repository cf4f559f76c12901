/**
 * The relay meeting at the end of pairing, retried until it works: the backoff, the stop,
 * the persisted token, and the whole handoff with the relay down at first (a real relay
 * started later on the same port, the real pairing controller and the phone's claim loop).
 */
import t from 'tap';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { FakeHotspot, FakeStation } from '../../../hw/wifi/fake.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { PairingInitiator } from '../../../app/e2ee/pairing-initiator.js';
import { PairingController } from '../../../firmware/pairing/controller.js';
import type { HandoffOutcome } from '../../../firmware/pairing/controller.js';
import {
  RelayMeeting,
  meetingDelayMs,
  registerAndOffer,
} from '../../../firmware/pairing/rendezvous.js';
import type { RelayAccountRecord } from '../../../firmware/pairing/rendezvous.js';
import { PairingClient } from '../../../app/pair/client.js';
import { meetAtRelay } from '../../../app/pair/cli.js';
import { startRelay } from '../../../relay/server.js';
import { RelayClient } from '../../../protocol/relay-client.js';
import { SILENT } from '../../../base/logger.js';
import { manualClock } from '../../fixtures/manual-clock.js';
import { freePort } from '../../../dev/fixtures/net.js';
import { newDeviceHub } from '../../../dev/fixtures/paired-hub.js';

void t.test('the backoff doubles from its first delay up to its cap', async (t) => {
  const b = { initialMs: 2000, maxMs: 60_000 };
  t.same(
    [1, 2, 3, 4, 5, 6, 7, 50].map((n) => meetingDelayMs(n, b)),
    [2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000],
  );
  t.equal(meetingDelayMs(10_000, b), 60_000, 'no overflow on a long outage');
});

function memoryStore() {
  const log: string[] = [];
  let token: string | undefined;
  return {
    log,
    get token() {
      return token;
    },
    store: {
      load: () => Promise.resolve(token),
      save: (tk: string) => {
        log.push(`save ${tk}`);
        token = tk;
        return Promise.resolve();
      },
      clear: () => {
        log.push('clear');
        token = undefined;
        return Promise.resolve();
      },
    },
  };
}

void t.test(
  'retried on the injected clock until it works; the token waits in the store',
  async (t) => {
    const { clock, advance } = manualClock();
    const mem = memoryStore();
    const tries: (string | undefined)[] = [];
    let failing = 2;
    const m = new RelayMeeting({
      attempt: (token) => {
        tries.push(token);
        if (failing-- > 0) return Promise.reject(new Error('relay down'));
        return Promise.resolve();
      },
      store: mem.store,
      clock,
      backoff: { initialMs: 1000, maxMs: 5000 },
    });
    t.equal(await m.start('tok-1'), 'retrying');
    t.match(m.status(), {
      state: 'waiting',
      failures: 1,
      lastError: 'relay down',
      nextAttemptAt: 1000,
    });
    t.equal(mem.token, 'tok-1', 'the token is kept until offered');
    advance(999);
    t.equal(tries.length, 1, 'nothing before the delay');
    const failed = once(m, 'failed');
    advance(1);
    await failed;
    t.match(m.status(), { state: 'waiting', failures: 2, nextAttemptAt: 3000 });
    const met = m.whenMet();
    advance(2000);
    await met;
    t.same(tries, ['tok-1', 'tok-1', 'tok-1']);
    t.match(m.status(), { state: 'met', failures: 2, nextAttemptAt: undefined });
    t.same(mem.log, ['save tok-1', 'clear'], 'forgotten once offered');
  },
);

void t.test(
  'a restart resumes the persisted token; stop aborts the attempt in flight',
  async (t) => {
    const { clock, advance } = manualClock();
    const mem = memoryStore();
    await mem.store.save('tok-from-before');
    const signals: AbortSignal[] = [];
    const tokens: (string | undefined)[] = [];
    let began: () => void = () => undefined;
    const attempted = new Promise<void>((r) => (began = r));
    const m = new RelayMeeting({
      // a relay that never answers: the attempt ends only with its signal
      attempt: (token, signal) => {
        signals.push(signal);
        tokens.push(token);
        began();
        return new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            reject(new Error('aborted'));
          });
        });
      },
      store: mem.store,
      clock,
    });
    const first = m.start();
    await attempted;
    t.same(tokens, ['tok-from-before'], 'the persisted token is offered');
    t.equal(m.state, 'trying');
    const waiting = m.whenMet();
    await m.stop();
    t.equal(await first, 'retrying');
    t.ok(signals[0]?.aborted, 'the request in flight was aborted');
    t.equal(m.state, 'stopped');
    advance(10 * 60_000);
    t.equal(signals.length, 1, 'no attempt after stop');
    t.equal(mem.token, 'tok-from-before', 'the token stays for the next start');
    const ac = new AbortController();
    const w2 = m.whenMet(ac.signal);
    ac.abort();
    await t.rejects(w2, /stopped waiting/);
    void waiting.catch(() => undefined);
  },
);

void t.test(
  'the relay is down at the handoff and comes up later: the hub meets the phone there without a restart',
  async (t) => {
    const { profile: p, id, devicePsk, hub } = await newDeviceHub('vigil-meet-');
    const port = await freePort();
    const relayUrl = `http://127.0.0.1:${port}`;
    const { clock, advance } = manualClock();
    const mem = memoryStore();
    let account: RelayAccountRecord | undefined;
    const meeting = new RelayMeeting({
      attempt: async (token, signal) => {
        account = await registerAndOffer({
          relay: { url: relayUrl },
          deviceId: id.deviceId,
          saved: account,
          save: (a) => {
            account = a;
            return Promise.resolve();
          },
          token,
          signal,
        });
      },
      store: mem.store,
      clock,
    });
    t.teardown(() => meeting.stop());
    const ctl = new PairingController({
      identity: id,
      hotspot: new FakeHotspot(),
      station: new FakeStation([{ ssid: 'home-net', passphrase: 'right password' }]),
      settings: {
        interface: 'wlan0',
        countryCode: 'DE',
        address: '127.0.0.1',
        prefixLength: 24,
        dhcpStart: '10.0.0.2',
        dhcpEnd: '10.0.0.9',
        port: 0,
      },
      newResponder: () => new PairingResponder({ hub, devicePsk }),
      handleConfig: (b) => hub.handleConfig(b),
      meetAtRelay: (token) => meeting.start(token),
    });
    t.teardown(() => ctl.close());
    await ctl.open('first-boot');
    const c = await PairingClient.connect('127.0.0.1', ctl.port!);
    const phone = await c.pair(
      new PairingInitiator({
        dir: await mkdtemp(join(tmpdir(), 'vigil-meet-phone-')),
        fs: new DurableFs(),
        profile: p,
        psk: devicePsk,
      }),
    );
    const handoff = once(ctl, 'handoff');
    const token = await c.sendCredentials(phone, 'home-net', 'right password');
    c.close();
    // the phone starts claiming at once (its real loop; short steps: the relay is local)
    const claimed = meetAtRelay(relayUrl, token, 120_000, [50]);
    const [outcome] = (await handoff) as [HandoffOutcome];
    t.match(outcome, { ok: true, ssid: 'home-net', relay: 'retrying' }, 'paired; the relay later');
    t.match(meeting.status(), { state: 'waiting', failures: 1 });
    t.match(meeting.status().lastError, /unreachable/);
    t.equal(account, undefined, 'no account yet');
    t.equal(mem.token, token, 'the token waits for its offer');

    // the relay comes up (on the URL the hub was given); the next attempt is due
    const relay = await startRelay({
      dataDir: await mkdtemp(join(tmpdir(), 'vigil-meet-relay-')),
      logger: SILENT,
      port,
    });
    t.teardown(() => relay.close());
    const met = meeting.whenMet();
    advance(meeting.status().nextAttemptAt! - clock.now());
    await met;
    const acct = await claimed;
    t.equal(acct.deviceId, id.deviceId, 'the phone met this hub at the relay');
    t.equal(mem.token, undefined, 'the offered token is forgotten');
    const hubAtRelay = new RelayClient({ url: relayUrl, token: account!.token });
    t.same(
      (await hubAtRelay.phones()).map((ph) => ph.phoneId),
      [acct.phoneId],
      'the hub sees the phone',
    );
  },
);
