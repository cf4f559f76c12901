import t from 'tap';
import { pbkdf2Sync } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '../../../base/errors.js';
import { run } from '../../../hw/os/run.js';
import {
  ipToInt,
  renderDnsmasqConf,
  renderHostapdConf,
  renderWpaSupplicantConf,
  wpaPsk,
} from '../../../hw/wifi/conf.js';

const base = {
  interface: 'wlan0',
  ssid: 'Vigil-ABCDEF',
  passphrase: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567',
  countryCode: 'DE',
  ctrlDir: '/run/vigil/hotspot/ctrl',
};

void t.test('hostapd: WPA2-PSK + CCMP forced, country code, hex SSID', async (t) => {
  const c = renderHostapdConf(base);
  for (const line of [
    'wpa=2',
    'wpa_key_mgmt=WPA-PSK',
    'rsn_pairwise=CCMP',
    'country_code=DE',
    'ieee80211d=1',
    'wps_state=0',
    `ssid2=${Buffer.from('Vigil-ABCDEF').toString('hex')}`,
    'channel=6',
    'ieee80211w=1',
  ]) {
    t.match(c, new RegExp(`^${line}$`, 'm'), line);
  }
  t.notMatch(c, /TKIP/);
  t.notMatch(c, /^wpa_pairwise=/m);
  t.notMatch(c, /^wpa=1$/m);
  t.equal(c.split('\n').filter((l) => l.startsWith('wpa_passphrase=')).length, 1);
});

void t.test('every injection and range problem is refused with a clear error', async (t) => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ passphrase: 'short' }, /at least 8/],
    [{ passphrase: 'x'.repeat(64) }, /at most 63/],
    [{ passphrase: 'goodpass\nwpa=1' }, /printable ASCII/],
    [{ passphrase: 'paßwörter-lang' }, /printable ASCII/],
    [{ ssid: '' }, /1-32 bytes/],
    [{ ssid: 'x'.repeat(33) }, /1-32 bytes/],
    [{ ssid: 'ok\nwpa=1' }, /control characters/],
    [{ countryCode: 'de' }, /country code/],
    [{ countryCode: 'DEU' }, /country code/],
    [{ interface: 'wlan0\nx' }, /interface name/],
    [{ channel: 14 }, /channel/],
    [{ ctrlDir: 'relative' }, /absolute/],
    [{ ctrlDir: '/run/x\ny' }, /absolute|control/],
    [{ extra: 'field' }, /extra|Unrecognized/i],
  ];
  for (const [patch, msg] of bad) {
    t.throws(
      () => renderHostapdConf({ ...base, ...patch }),
      ValidationError,
      JSON.stringify(patch),
    );
    t.throws(() => renderHostapdConf({ ...base, ...patch }), msg);
  }
});

void t.test(
  'hostapd itself accepts the generated file (driver none: no radio on the host)',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-hapd-'));
    const conf = renderHostapdConf({
      ...base,
      interface: 'vigiltest0',
      ctrlDir: join(dir, 'ctrl'),
    }).replace('driver=nl80211', 'driver=none');
    await writeFile(join(dir, 'h.conf'), conf, { mode: 0o600 });
    // hostapd exits on SIGTERM at our timeout; a config error makes it exit 1 at once
    const r = await run('hostapd', ['-dd', join(dir, 'h.conf')], { timeoutMs: 1500 }).catch(
      (e: unknown) => e,
    );
    t.equal((r as { failure?: string }).failure, 'timeout', 'hostapd kept running (config parsed)');
    // a broken config (WPA with no key) is what a parse failure looks like
    await writeFile(join(dir, 'bad.conf'), conf.replace(/^wpa_passphrase=.*$/m, ''), {
      mode: 0o600,
    });
    const bad = await run('hostapd', [join(dir, 'bad.conf')], { timeoutMs: 5000 }).catch(
      (e: unknown) => e,
    );
    t.equal(
      (bad as { failure?: string }).failure,
      'exit',
      'hostapd refuses a config without a key',
    );
  },
);

void t.test(
  'dnsmasq: DHCP only, bound, no router or DNS handed out; dnsmasq --test accepts it',
  async (t) => {
    const d = {
      interface: 'wlan0',
      address: '10.42.0.1',
      rangeStart: '10.42.0.10',
      rangeEnd: '10.42.0.50',
      leaseFile: '/run/vigil/hotspot/leases',
    };
    const c = renderDnsmasqConf(d);
    for (const line of [
      'port=0',
      'bind-interfaces',
      'interface=wlan0',
      'listen-address=10.42.0.1',
      'dhcp-range=10.42.0.10,10.42.0.50,255.255.255.0,900s',
      'dhcp-option=option:router',
      'dhcp-option=option:dns-server',
    ]) {
      t.match(c, new RegExp(`^${line}$`, 'm'), line);
    }
    t.throws(() => renderDnsmasqConf({ ...d, rangeStart: '10.42.0.60' }), /range start/);
    t.throws(
      () => renderDnsmasqConf({ ...d, address: '10.42.0.1\nserver=8.8.8.8' }),
      ValidationError,
    );
    t.throws(() => renderDnsmasqConf({ ...d, leaseSeconds: 5 }), ValidationError);
    t.equal(ipToInt('10.0.0.1'), 167772161);
    const dir = await mkdtemp(join(tmpdir(), 'vigil-dnsmasq-'));
    await writeFile(join(dir, 'd.conf'), c);
    const r = await run('dnsmasq', ['--test', `--conf-file=${join(dir, 'd.conf')}`]);
    t.match(r.stderr + r.stdout.toString(), /syntax check OK/);
  },
);

void t.test('wpa_supplicant: PSK written as the PBKDF2 key, never the passphrase', async (t) => {
  const c = renderWpaSupplicantConf({
    ctrlDir: '/run/vigil/station/ctrl',
    countryCode: 'GB',
    network: { ssid: 'Home "net"', passphrase: 'correct horse battery' },
  });
  const expected = pbkdf2Sync('correct horse battery', 'Home "net"', 4096, 32, 'sha1').toString(
    'hex',
  );
  t.match(c, new RegExp(`^\\tpsk=${expected}$`, 'm'));
  t.notMatch(c, /correct horse/);
  t.match(c, new RegExp(`^\\tssid=${Buffer.from('Home "net"').toString('hex')}$`, 'm'));
  t.match(c, /^country=GB$/m);
  t.match(c, /^\tpairwise=CCMP$/m);
  t.notMatch(renderWpaSupplicantConf({ ctrlDir: '/run/x', countryCode: 'GB' }), /network=/);
  // IEEE 802.11i test vector (Annex J.4): "password" / "IEEE"
  t.equal(
    wpaPsk('password', 'IEEE'),
    'f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e',
  );
  t.throws(() => wpaPsk('short', 'x'), ValidationError);
  const dir = await mkdtemp(join(tmpdir(), 'vigil-wpas-'));
  await writeFile(join(dir, 'w.conf'), c);
  // wpa_supplicant parses the file before touching any interface; a bad interface is the only error left
  const r = await run(
    'wpa_supplicant',
    ['-i', 'vigilnone0', '-c', join(dir, 'w.conf'), '-D', 'nl80211'],
    { timeoutMs: 5000 },
  ).catch((e: unknown) => e);
  const text = (r as { stderr?: string }).stderr ?? '';
  t.notMatch(text, /failed to parse|Line \d+:/i, 'no parse errors');
});
