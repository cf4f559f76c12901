import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { spawnProcess } from '../../../hw/os/run.js';
import { createUnixDgramSocket } from '../../../hw/os/unix-dgram.js';
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

/**
 * A station whose "wpa_supplicant" is a sleeping process plus a control socket of the test's
 * own that reports the association as complete; `ipAddr` is what `ip addr show` prints.
 */
async function associatedStation(t: Test, dhcpSays: string, ipAddr: string) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-sta-'));
  const paths = new HostPaths(root);
  const calls: string[][] = [];
  const st = new WpaSupplicantStation({
    paths,
    interface: 'wlan9',
    countryCode: 'DE',
    spawn: () => {
      const server = createUnixDgramSocket();
      server.on('message', (buf: Buffer, from) => {
        const reply =
          { PING: 'PONG\n', STATUS: 'wpa_state=COMPLETED\nbssid=02:00:00:00:03:00\n' }[
            buf.toString()
          ] ?? 'OK\n';
        server.send(Buffer.from(reply), 0, reply.length, from.path ?? '');
      });
      server.bind(paths.host('/run/vigil/station/ctrl/wlan9'));
      t.teardown(() => {
        server.close();
      });
      return spawnProcess('sleep', ['60']);
    },
    run: async (cmd, args) => {
      calls.push([cmd, ...args]);
      const stdout = cmd === 'ip' ? ipAddr : '';
      return {
        stdout: Buffer.from(stdout),
        stderr: cmd === 'busybox' ? dhcpSays : '',
        exitCode: 0,
      };
    },
    addressing: { dhcp: ['busybox', 'udhcpc', '-i', 'wlan9'] },
    joinTimeoutMs: 20_000,
  });
  t.teardown(() => st.leave());
  return { st, calls };
}

void t.test(
  'a DHCP lease that leaves no address fails the join (EWIFI_DHCP), naming what the client said',
  async (t) => {
    // udhcpc gets a lease and exits 0 even when its event script cannot run (a noexec mount)
    const { st, calls } = await associatedStation(
      t,
      "udhcpc: lease of 192.168.77.50 obtained from 192.168.77.1, lease time 3600\nudhcpc: can't execute '/run/vigil/udhcpc.sh': Permission denied\n",
      '',
    );
    await t.rejects(st.join({ ssid: 'HomeNet', passphrase: 'home wifi password' }), {
      code: 'EWIFI_DHCP',
      message:
        /^no IPv4 address on wlan9 after DHCP \(busybox: .*lease of 192\.168\.77\.50.*Permission denied\)$/,
    });
    t.notOk(st.connected);
    t.same(calls[0], ['busybox', 'udhcpc', '-i', 'wlan9'], 'the DHCP client ran');
  },
);

void t.test('a DHCP lease on the interface is the joined address', async (t) => {
  const { st } = await associatedStation(
    t,
    'udhcpc: lease of 192.168.77.50 obtained from 192.168.77.1, lease time 3600\n',
    '3: wlan9    inet 192.168.77.50/24 scope global wlan9\\       valid_lft forever preferred_lft forever\n',
  );
  t.same(await st.join({ ssid: 'HomeNet', passphrase: 'home wifi password' }), {
    bssid: '02:00:00:00:03:00',
    address: '192.168.77.50/24',
  });
  t.ok(st.connected);
});
