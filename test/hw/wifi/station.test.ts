import t from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { WpaSupplicantStation, WifiJoinError, parseIwScan } from '../../../hw/wifi/station.js';

const SCAN = `BSS 02:00:00:00:00:00(on wlan1)
\tlast seen: 312.140s [boottime]
\tTSF: 1700000000 usec (0d, 00:00:00)
\tfreq: 2437
\tbeacon interval: 100 TUs
\tcapability: ESS Privacy ShortSlotTime (0x0411)
\tsignal: -30.00 dBm
\tlast seen: 0 ms ago
\tSSID: home\\x20net
\tSupported rates: 1.0* 2.0* 5.5* 11.0* 6.0 9.0 12.0 18.0
\tRSN:\t * Version: 1
\t\t * Group cipher: CCMP
BSS 02:00:00:00:02:00(on wlan1) -- associated
\tfreq: 2412
\tsignal: -45.00 dBm
\tSSID: Vigil-ABCDEF
BSS 02:00:00:00:03:00(on wlan1)
\tfreq: 2462
\tSSID: caf\\xc3\\xa9
`;

void t.test('parses iw scan output, including escaped SSIDs', async (t) => {
  const r = parseIwScan(SCAN);
  t.same(r, [
    { bssid: '02:00:00:00:00:00', ssid: 'home net', signalDbm: -30, freqMhz: 2437, rsn: true },
    { bssid: '02:00:00:00:02:00', ssid: 'Vigil-ABCDEF', signalDbm: -45, freqMhz: 2412, rsn: false },
    { bssid: '02:00:00:00:03:00', ssid: 'café', signalDbm: undefined, freqMhz: 2462, rsn: false },
  ]);
  t.same(parseIwScan(''), []);
});

void t.test('scan falls back to a plain scan when ap-force is refused', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-sta-'));
  const calls: string[][] = [];
  const st = new WpaSupplicantStation({
    paths: new HostPaths(root),
    interface: 'wlan0',
    countryCode: 'DE',
    run: async (cmd, args) => {
      calls.push([cmd, ...args]);
      if (args.includes('ap-force')) throw new Error('Operation not supported');
      return { stdout: Buffer.from(SCAN), stderr: '', exitCode: 0 };
    },
  });
  const r = await st.scan();
  t.equal(r.length, 3);
  t.same(calls, [
    ['iw', 'dev', 'wlan0', 'scan', 'ap-force'],
    ['iw', 'dev', 'wlan0', 'scan'],
  ]);
});

void t.test('a busy scan is retried; when both scans fail the error names both', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-sta-'));
  const calls: string[][] = [];
  let busy = 1;
  const busyErr = Object.assign(new Error('iw exited with code 240'), {
    stderr: 'command failed: Device or resource busy (-16)',
  });
  const st = new WpaSupplicantStation({
    paths: new HostPaths(root),
    interface: 'wlan0',
    countryCode: 'DE',
    run: async (cmd, args) => {
      calls.push([cmd, ...args]);
      if (busy-- > 0) throw busyErr;
      return { stdout: Buffer.from(SCAN), stderr: '', exitCode: 0 };
    },
  });
  t.equal((await st.scan()).length, 3);
  t.same(calls, [
    ['iw', 'dev', 'wlan0', 'scan', 'ap-force'],
    ['iw', 'dev', 'wlan0', 'scan', 'ap-force'],
  ]);
  const none = new WpaSupplicantStation({
    paths: new HostPaths(root),
    interface: 'wlan0',
    countryCode: 'DE',
    run: async (_cmd, args) => {
      throw args.includes('ap-force')
        ? new Error('iw exited with code 161: Operation not supported (-95)')
        : new Error('iw exited with code 255: Network is down (-100)');
    },
  });
  await t.rejects(none.scan(), {
    code: 'EWIFI_SCAN',
    message: /ap-force: .*\(-95\); plain: .*\(-100\)/,
  });
});

void t.test(
  'bad credentials are refused before anything runs; a missing supplicant is a clear error',
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-sta-'));
    const st = new WpaSupplicantStation({
      paths: new HostPaths(root),
      interface: 'wlan0',
      countryCode: 'DE',
      wpaSupplicant: '/nonexistent/wpa_supplicant',
      joinTimeoutMs: 3000,
    });
    await t.rejects(st.join({ ssid: '', passphrase: 'password1' }), { code: 'EWIFI_INPUT' });
    await t.rejects(st.join({ ssid: 'x\ny', passphrase: 'password1' }), { code: 'EWIFI_INPUT' });
    await t.rejects(st.join({ ssid: 'home', passphrase: 'short' }), {
      code: 'EWIFI_INPUT',
      message: /at least 8/,
    });
    await t.rejects(st.join({ ssid: 'home', passphrase: 'long enough' }), WifiJoinError);
    t.notOk(st.connected);
  },
);
