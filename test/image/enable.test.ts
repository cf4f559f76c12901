import t from 'tap';
import { lstat, mkdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { disableUnits, enableUnits, installSection } from '../../image/enable.js';
import { run, which } from '../../hw/os/run.js';

const HUB =
  '[Unit]\nDescription=hub\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n';
const TIMER = '[Timer]\nOnBootSec=5\n[Install]\nWantedBy=timers.target\n# comment\n';

async function rootfs(dir: string): Promise<void> {
  await mkdir(join(dir, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  await mkdir(join(dir, 'lib/systemd/system'), { recursive: true });
  await writeFile(join(dir, 'etc/systemd/system/vigil-hub.service'), HUB);
  await writeFile(join(dir, 'lib/systemd/system/vigil-os-confirm.timer'), TIMER);
  await writeFile(join(dir, 'lib/systemd/system/hostapd.service'), HUB);
  await writeFile(
    join(dir, 'lib/systemd/system/wpa_supplicant.service'),
    HUB + 'Alias=dbus-fi.w1.wpa_supplicant1.service\n',
  );
  // as Debian's packages leave them: enabled, one with a D-Bus alias
  await symlink(
    '/lib/systemd/system/hostapd.service',
    join(dir, 'etc/systemd/system/multi-user.target.wants/hostapd.service'),
  );
  await symlink(
    '/lib/systemd/system/wpa_supplicant.service',
    join(dir, 'etc/systemd/system/multi-user.target.wants/wpa_supplicant.service'),
  );
  await symlink(
    '/lib/systemd/system/wpa_supplicant.service',
    join(dir, 'etc/systemd/system/dbus-fi.w1.wpa_supplicant1.service'),
  );
}

t.test(
  'installSection reads WantedBy/RequiredBy and refuses what the build does not do',
  async (t) => {
    t.same(installSection('a.service', HUB), { wantedBy: ['multi-user.target'], requiredBy: [] });
    t.same(
      installSection('a.service', '[Install]\nWantedBy=a.target b.target\nRequiredBy=c.target\n'),
      {
        wantedBy: ['a.target', 'b.target'],
        requiredBy: ['c.target'],
      },
    );
    t.throws(() => installSection('w.service', '[Install]\nAlias=x.service\n'), {
      message: 'w.service: [Install] Alias= is not supported by the image build',
    });
  },
);

t.test(
  'enable makes the wants links (idempotent); disable removes links and aliases',
  async (t) => {
    const dir = t.testdir();
    await rootfs(dir);
    const units = ['vigil-hub.service', 'vigil-os-confirm.timer'];
    const made = await enableUnits(dir, units);
    t.same(made, [
      '/etc/systemd/system/multi-user.target.wants/vigil-hub.service',
      '/etc/systemd/system/timers.target.wants/vigil-os-confirm.timer',
    ]);
    t.equal(await readlink(join(dir, made[0] ?? '')), '/etc/systemd/system/vigil-hub.service');
    t.equal(await readlink(join(dir, made[1] ?? '')), '/lib/systemd/system/vigil-os-confirm.timer');
    t.same(await enableUnits(dir, units), made, 'a second enable changes nothing');
    const removed = await disableUnits(dir, ['hostapd.service', 'wpa_supplicant.service']);
    t.same(removed, [
      '/etc/systemd/system/dbus-fi.w1.wpa_supplicant1.service',
      '/etc/systemd/system/multi-user.target.wants/hostapd.service',
      '/etc/systemd/system/multi-user.target.wants/wpa_supplicant.service',
    ]);
    t.ok((await lstat(join(dir, made[0] ?? ''))).isSymbolicLink(), 'the hub stays enabled');
    t.same(await disableUnits(dir, ['hostapd.service']), [], 'disabling twice is no error');
    await t.rejects(enableUnits(dir, ['nope.service']), {
      message: /unit nope\.service not found/,
    });
  },
);

t.test('the host systemctl agrees: enabled and disabled as it would report', async (t) => {
  if ((await which('systemctl')) === null) {
    t.comment('no systemctl on this host');
    return;
  }
  const dir = t.testdir();
  await rootfs(dir);
  await enableUnits(dir, ['vigil-hub.service', 'vigil-os-confirm.timer']);
  await disableUnits(dir, ['hostapd.service', 'wpa_supplicant.service']);
  const state = async (u: string): Promise<string> =>
    (await run('systemctl', ['--root', dir, 'is-enabled', u], { okExitCodes: [0, 1] })).stdout
      .toString('utf8')
      .trim();
  t.equal(await state('vigil-hub.service'), 'enabled');
  t.equal(await state('vigil-os-confirm.timer'), 'enabled');
  t.equal(await state('hostapd.service'), 'disabled');
  t.equal(await state('wpa_supplicant.service'), 'disabled');
});
