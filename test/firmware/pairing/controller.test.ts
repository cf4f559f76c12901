/**
 * The controller with the real MLS pairing and frame server, fake radios
 * (hw/wifi/fake.ts; the real ones run in the VM scenarios).
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
import { E2eePhone } from '../../../app/e2ee/phone.js';
import { PairingController } from '../../../firmware/pairing/controller.js';
import type { HandoffOutcome } from '../../../firmware/pairing/controller.js';
import { PairingClient } from '../../../app/pair/client.js';
import { newDeviceHub } from '../../../dev/fixtures/paired-hub.js';

void t.test(
  'pair, hand off to the home network; a wrong password brings the hotspot back',
  async (t) => {
    const { profile: p, id, derived: d, devicePsk, hub } = await newDeviceHub('vigil-ctl-');
    const hotspot = new FakeHotspot();
    const station = new FakeStation([{ ssid: 'home-net', passphrase: 'right password' }]);
    const met: string[] = [];
    const saved: string[] = [];
    const ctl = new PairingController({
      identity: id,
      hotspot,
      station,
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
      meetAtRelay: async (token) => {
        met.push(token);
        return 'met' as const;
      },
      saveCredentials: async (c) => {
        saved.push(c.relay ? `${c.ssid} via ${c.relay.url}` : c.ssid);
      },
    });
    t.teardown(() => ctl.close());
    const states: string[] = [];
    ctl.on('state', (s) => states.push(s));
    await ctl.open('first-boot');
    t.ok(hotspot.active);
    t.equal(hotspot.config?.ssid, d.ssid, 'hotspot uses the SSID derived from the label');
    t.equal(hotspot.config?.passphrase, d.wpaPassphrase, 'and the derived WPA2 passphrase');
    const port = ctl.port;
    t.ok(port, 'frame server listening');

    const phoneDir = await mkdtemp(join(tmpdir(), 'vigil-ctl-phone-'));
    const c = await PairingClient.connect('127.0.0.1', port!);
    const phone = await c.pair(
      new PairingInitiator({ dir: phoneDir, fs: new DurableFs(), profile: p, psk: devicePsk }),
    );
    const firstP = once(ctl, 'handoff');
    const token = await c.sendCredentials(phone, 'home-net', 'wrong password');
    t.match(token, /^[0-9a-f]{32}$/);
    c.close();
    const [first] = (await firstP) as [HandoffOutcome];
    t.match(first, { ok: false, ssid: 'home-net', code: 'EWIFI_WRONG_PASSWORD' });
    t.ok(hotspot.active, 'hotspot is back after the failed join');
    t.ok(ctl.window.isOpen, 'window reopened');
    t.equal(met.length, 0);

    // the paired phone reconnects and sends corrected credentials (config group only)
    const again = await E2eePhone.open({ dir: phoneDir, fs: new DurableFs(), profile: p });
    t.ok(again, 'phone state survived');
    const c2 = await PairingClient.connect('127.0.0.1', ctl.port!);
    const secondP = once(ctl, 'handoff');
    // this time the phone also chooses its own relay
    const token2 = await c2.sendCredentials(again!, 'home-net', 'right password', undefined, {
      url: 'https://my-relay.example',
    });
    c2.close();
    const [second] = (await secondP) as [HandoffOutcome];
    t.match(second, { ok: true, ssid: 'home-net', relay: 'met' });
    t.notOk(hotspot.active, 'hotspot gone');
    t.equal(station.joinedSsid, 'home-net', 'associated to the home network');
    t.same(met, [token2], 'met the phone at the relay with its token');
    t.same(saved, ['home-net via https://my-relay.example'], 'saved with the relay chosen');
    t.notOk(ctl.serving);
    t.same(hotspot.log, [
      'start Vigil-' + id.deviceId.slice(0, 6),
      'stop',
      'start Vigil-' + id.deviceId.slice(0, 6),
      'stop',
    ]);
    t.ok(
      station.log.indexOf('scan') < station.log.indexOf('join home-net'),
      'scanned before tearing the AP down',
    );
    t.same(
      states.filter((s, i) => s !== states[i - 1]),
      ['pairing', 'handoff', 'pairing', 'handoff', 'paired'],
    );
  },
);
