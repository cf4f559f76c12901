import t from 'tap';
import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { udhcpcCommand } from '../../../hw/wifi/dhcp.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { run } from '../../../hw/os/run.js';

void t.test('the udhcpc event script configures address, route and DNS', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-dhcp-'));
  const paths = new HostPaths(root);
  const argv = await udhcpcCommand(new DurableFs(), paths, 'wlan0');
  const script = paths.host('/var/lib/vigil/udhcpc.sh');
  t.same(argv, [
    'busybox',
    'udhcpc',
    '-i',
    'wlan0',
    '-n',
    '-q',
    '-t',
    '10',
    '-T',
    '3',
    '-s',
    script,
  ]);
  t.equal((await stat(script)).mode & 0o777, 0o700);
  // run it for real with `ip` replaced by a recorder
  const bin = join(root, 'bin');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(bin);
  await mkdir(paths.host('/etc'), { recursive: true });
  const calls = join(root, 'calls');
  await writeFile(join(bin, 'ip'), `#!/bin/sh\necho "ip $*" >> '${calls}'\nexit 0\n`);
  await chmod(join(bin, 'ip'), 0o755);
  const env = {
    PATH: `${bin}:/usr/bin:/bin`,
    interface: 'wlan0',
    ip: '192.168.77.23',
    mask: '24',
    router: '192.168.77.1 192.168.77.254',
    dns: '192.168.77.1 9.9.9.9',
    domain: 'home.arpa',
  };
  const r = await run('/bin/sh', [script, 'bound'], { env, timeoutMs: 10_000 });
  t.equal(r.stdout.toString().trim(), 'BOUND 192.168.77.23');
  const ipCalls = (await readFile(calls, 'utf8')).trim().split('\n');
  t.same(ipCalls.slice(0, 2), [
    'ip -4 addr flush dev wlan0',
    'ip addr add 192.168.77.23/24 dev wlan0',
  ]);
  t.equal(ipCalls.at(-1), 'ip route add default via 192.168.77.1 dev wlan0', 'first router only');
  t.equal(
    ipCalls.filter((c) => c.startsWith('ip route del')).length,
    4,
    'old defaults removed (bounded)',
  );
  t.equal(
    await readFile(paths.host('/etc/resolv.conf'), 'utf8'),
    'search home.arpa\nnameserver 192.168.77.1\nnameserver 9.9.9.9\n',
  );
  await writeFile(calls, '');
  await run('/bin/sh', [script, 'deconfig'], { env, timeoutMs: 10_000 });
  t.same((await readFile(calls, 'utf8')).trim().split('\n'), [
    'ip -4 addr flush dev wlan0',
    'ip link set wlan0 up',
  ]);
  // no DNS offered: resolv.conf untouched; other events do nothing
  await writeFile(paths.host('/etc/resolv.conf'), 'nameserver 1.1.1.1\n');
  await run('/bin/sh', [script, 'bound'], {
    env: { ...env, dns: '', router: '' },
    timeoutMs: 10_000,
  });
  t.equal(await readFile(paths.host('/etc/resolv.conf'), 'utf8'), 'nameserver 1.1.1.1\n');
  const leasefail = await run('/bin/sh', [script, 'leasefail'], { env, timeoutMs: 10_000 });
  t.equal(leasefail.exitCode, 0);
});
