import t from 'tap';
import { mkdtemp, readFile, stat, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { run } from '../../../hw/os/run.js';
import { HostapdHotspot } from '../../../hw/wifi/hotspot.js';
import { MemoryLogger } from '../../../base/logger.js';

// Real hostapd (driver none: the host has no radio), real dnsmasq and real `ip`,
// inside a private network namespace with a veth pair standing in for wlan0.
const ns = `vigil-hs-${process.pid}`;
const cfg = {
  interface: 'vt0',
  ssid: 'Vigil-TESTAB',
  passphrase: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567',
  countryCode: 'DE',
  address: '10.42.0.1',
  prefixLength: 24,
  dhcpStart: '10.42.0.10',
  dhcpEnd: '10.42.0.20',
};

t.before(async () => {
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'add', 'vt0', 'type', 'veth', 'peer', 'name', 'vt1']);
  await run('ip', ['-n', ns, 'link', 'set', 'vt1', 'up']);
});
t.teardown(async () => {
  await run('ip', ['netns', 'del', ns]).catch(() => undefined);
});

const gone = (p: string) =>
  access(p).then(
    () => false,
    () => true,
  );

void t.test(
  'start: address, hostapd enabled, dnsmasq serving; stop removes everything',
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-hs-'));
    const log = new MemoryLogger();
    const hs = new HostapdHotspot({
      paths: new HostPaths(root),
      netns: ns,
      driver: 'none',
      logger: log,
    });
    await hs.start(cfg);
    t.ok(hs.active);
    const addr = await run('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'vt0']);
    t.match(addr.stdout.toString(), /inet 10\.42\.0\.1\/24/);
    const conf = join(hs.runtimeDir, 'hostapd.conf');
    t.equal((await stat(conf)).mode & 0o777, 0o600, 'config with the passphrase is private');
    t.match(await readFile(conf, 'utf8'), /^wpa=2$/m);
    const sockets = await run('ip', ['netns', 'exec', ns, 'ss', '-H', '-uln']);
    t.match(sockets.stdout.toString(), /:67\b/, 'dnsmasq listens for DHCP');
    await t.rejects(hs.start(cfg), { code: 'EHOTSPOT_STATE' });
    t.same(hs.stations(), []);
    // the interface's other address (the home network's, after a handoff) is not ours
    await run('ip', ['-n', ns, 'addr', 'add', '192.168.77.54/24', 'dev', 'vt0']);
    await hs.stop();
    t.notOk(hs.active);
    t.ok(await gone(hs.runtimeDir), 'runtime dir (passphrase) removed');
    const after = await run('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'vt0']);
    t.notMatch(after.stdout.toString(), /10\.42\.0\.1/, 'hotspot address removed');
    t.match(after.stdout.toString(), /192\.168\.77\.54/, 'other address kept');
    await hs.stop();
    const again = await run('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'vt0']);
    t.match(again.stdout.toString(), /192\.168\.77\.54/, 'a second stop touches nothing');
    t.notMatch(log.lines.join('\n'), new RegExp(cfg.passphrase), 'passphrase never logged');
  },
);

void t.test('a crashed hostapd is restarted (supervised child)', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-hs-'));
  const log = new MemoryLogger();
  const hs = new HostapdHotspot({
    paths: new HostPaths(root),
    netns: ns,
    driver: 'none',
    logger: log,
  });
  await hs.start(cfg);
  t.teardown(() => hs.stop());
  const pids = await run('ip', ['netns', 'pids', ns]);
  const comm = await Promise.all(
    pids.stdout
      .toString()
      .trim()
      .split('\n')
      .map(
        async (p) =>
          [p, (await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')).trim()] as const,
      ),
  );
  const hostapdPid = comm.find(([, c]) => c === 'hostapd')?.[0];
  t.ok(hostapdPid, 'hostapd runs in the namespace');
  process.kill(Number(hostapdPid), 'SIGKILL');
  for (let i = 0; i < 300 && !log.lines.some((l) => l.includes('hotspot child restarted')); i++)
    await new Promise((r) => setTimeout(r, 50));
  t.ok(log.lines.some((l) => l.includes('hotspot child exited') && l.includes('hostapd')));
  t.ok(
    log.lines.some((l) => l.includes('hotspot child restarted')),
    'restarted',
  );
  t.ok(hs.active);
});

void t.test('start failures are clear and leave nothing behind', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-hs-'));
  const hs = new HostapdHotspot({ paths: new HostPaths(root), netns: ns, driver: 'none' });
  await t.rejects(hs.start({ ...cfg, interface: 'nosuch0' }), {
    code: 'EHOTSPOT_START',
    message: /hotspot did not start|nosuch0/,
  });
  t.notOk(hs.active);
  t.ok(await gone(hs.runtimeDir));
  await t.rejects(hs.start({ ...cfg, passphrase: 'short' }), /at least 8/);
  const hs2 = new HostapdHotspot({
    paths: new HostPaths(root),
    netns: ns,
    driver: 'none',
    hostapd: '/nonexistent/hostapd',
    startTimeoutMs: 3000,
  });
  await t.rejects(hs2.start(cfg), { code: 'EHOTSPOT_START' });
  t.notOk(hs2.active);
});
