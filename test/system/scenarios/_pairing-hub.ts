// Helper (not a scenario): the hub side of the pairing system tests. Reads the provisioning
// bundle, runs the real PairingController with HostapdHotspot + WpaSupplicantStation on
// wlan0 and the real MLS hub, and reports through files in $HUB_DIR:
//   qr-payload (what the label would show), ready, handoff.json, relay-token.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { HostapdHotspot } from '../../../hw/wifi/hotspot.js';
import { WpaSupplicantStation } from '../../../hw/wifi/station.js';
import { JsonLogger } from '../../../base/logger.js';
import { MlsHub } from '../../../firmware/mls/hub.js';
import { PairingResponder } from '../../../firmware/mls/pairing-responder.js';
import { PairingController, DEFAULT_HOTSPOT } from '../../../firmware/pairing/controller.js';
import { loadMlsProfile } from '../../../protocol/mls-profile.js';
import { readBundle } from '../../../protocol/provisioning-bundle.js';
import { deriveIdentity } from '../../../protocol/identity.js';
import { encodeQrPayload } from '../../../protocol/qr-payload.js';

const dir = process.env.HUB_DIR ?? '/tmp/hub';
const bundleDir = process.env.HUB_BUNDLE ?? '';
const bundle = await readBundle(bundleDir);
if (!bundle) throw new Error(`no bundle in ${bundleDir}`);
await writeFile(join(dir, 'qr-payload'), encodeQrPayload(bundle), { mode: 0o600 });
const d = deriveIdentity(bundle.secret, bundle.deviceId);
const logger = new JsonLogger('hub', {
  level: 'debug',
  write: (l) => {
    process.stderr.write(l + '\n');
  },
});
logger.secrets.add(d.wpaPassphrase);
const paths = new HostPaths(join(dir, 'root'));
const t0 = Date.now();
const step = (what: string): void => {
  process.stderr.write(`hub: ${what} (+${Date.now() - t0} ms)\n`);
};
step('loading MLS');
const p = await loadMlsProfile();
step('MLS loaded');
const hub = await MlsHub.open({
  dir: join(dir, 'mls'),
  fs: new DurableFs(),
  deviceId: bundle.deviceId,
  profile: p,
});
const ctl = new PairingController({
  identity: bundle,
  hotspot: new HostapdHotspot({ paths, logger: logger.child('hotspot') }),
  station: new WpaSupplicantStation({
    paths,
    interface: 'wlan0',
    countryCode: 'DE',
    addressing: { static: process.env.HUB_HOME_ADDR ?? '192.168.77.2/24' },
    logger: logger.child('station'),
  }),
  settings: { ...DEFAULT_HOTSPOT, interface: 'wlan0', countryCode: 'DE', channel: 6 },
  newResponder: () =>
    new PairingResponder({ hub, devicePsk: { id: d.mlsPskId, secret: d.mlsPsk } }),
  handleConfig: (b) => hub.handleConfig(b),
  meetAtRelay: async (token) => {
    await writeFile(join(dir, 'relay-token'), token);
    return 'met' as const;
  },
  logger,
});
ctl.on('handoff', (o) => {
  void writeFile(join(dir, 'handoff.json'), JSON.stringify(o));
});
step('opening the pairing window');
await ctl.open('first-boot');
step('pairing window open');
await writeFile(join(dir, 'ready'), 'ready\n');
process.on('SIGTERM', () => {
  void ctl.close().then(() => process.exit(0));
});
// keep running: the station (wpa_supplicant) is our child
setInterval(() => undefined, 60_000);
