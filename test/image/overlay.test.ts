import t from 'tap';
import { BOARDS, RUNTIME_PACKAGES } from '../../image/boards.js';
import { planLayout } from '../../image/layout.js';
import {
  autobootTxt,
  bootOverlay,
  cliWrapper,
  cmdlineTxt,
  configTxt,
  fstab,
  growUnit,
  rootOverlay,
  twinJourneyUnit,
  TWIN_HUB_DROPIN,
  TWIN_SYSTEM_CONF,
  twinReportUnit,
  twinSetupUnit,
  unitsToEnable,
} from '../../image/overlay.js';

const pi = BOARDS['rpi-arm64'];
const twin = BOARDS['qemu-amd64'];
const layout = planLayout(pi.sizes);

t.test('config.txt: Debian kernel + initrd, upstream DTs, camera-native H.264', async (t) => {
  const c = configTxt('6.1.0-28-arm64');
  t.match(c, /^arm_64bit=1$/m);
  t.match(c, /^upstream_kernel=1$/m);
  t.match(c, /^kernel=vmlinuz-6\.1\.0-28-arm64$/m);
  t.match(c, /^initramfs initrd\.img-6\.1\.0-28-arm64 followkernel$/m);
  t.match(c, /^start_x=1$/m);
  t.match(c, /^gpu_mem=128$/m);
});

t.test('cmdline.txt: each slot boots its own root by PARTUUID', async (t) => {
  t.match(cmdlineTxt(pi, layout, 'a'), /root=PARTUUID=5649474c-05 /);
  t.match(cmdlineTxt(pi, layout, 'b'), /root=PARTUUID=5649474c-06 /);
  t.match(
    cmdlineTxt(twin, planLayout(twin.sizes), 'a'),
    /^console=ttyS0,115200 root=PARTUUID=5649474c-05 rootfstype=ext4 rw rootwait/,
  );
  t.ok(cmdlineTxt(pi, layout, 'a').endsWith('\n'));
  t.equal(cmdlineTxt(pi, layout, 'a').split('\n').length, 2, 'one line');
  // a panic before systemd arms the watchdog resets the board (the tryboot flag is gone then)
  t.match(cmdlineTxt(pi, layout, 'b'), / panic=10 /);
});

t.test('autoboot.txt: tryboot A/B between partitions 1 and 2', async (t) => {
  t.equal(autobootTxt(), '[all]\ntryboot_a_b=1\nboot_partition=1\n[tryboot]\nboot_partition=2\n');
});

t.test('boot files per board', async (t) => {
  t.same(
    bootOverlay(pi, layout, 'k').map((f) => f.path),
    ['/cmdline.txt', '/config.txt', '/autoboot.txt'],
  );
  // the twin's harness plays the Pi firmware: it reads the same autoboot.txt
  t.same(
    bootOverlay(twin, planLayout(twin.sizes), 'k').map((f) => f.path),
    ['/cmdline.txt', '/autoboot.txt'],
  );
});

t.test('OS updates: watchdog on, RAUC config and backend in every image', async (t) => {
  t.match(configTxt('k'), /^dtparam=watchdog=on$/m, 'the Pi SoC watchdog');
  for (const board of [pi, twin]) {
    const files = rootOverlay(board, planLayout(board.sizes));
    const get = (p: string) => files.find((f) => f.path === p);
    // the Pi's bcm2835-wdt at 15 s; the twin's i6300esb counts host time under a loaded TCG
    t.match(
      get('/etc/systemd/system.conf.d/vigil-watchdog.conf')?.content,
      board === pi ? /^RuntimeWatchdogSec=15s$/m : /^RuntimeWatchdogSec=2min$/m,
    );
    t.match(get('/etc/rauc/system.conf')?.content, /^bootloader=custom$/m);
    const confirm = get('/usr/lib/systemd/system/vigil-os-confirm.service')?.content ?? '';
    t.match(confirm, /^ExecStart=\/usr\/bin\/vigil ota os-confirm --deadline$/m);
    t.match(confirm, /^ConditionPathExists=\/boot\/firmware\/vigil-os\.json$/m);
    t.notMatch(confirm, /\[Install\]/, 'started by its timer only');
    t.match(
      get('/usr/lib/systemd/system/vigil-os-confirm.timer')?.content,
      /^OnBootSec=900s$/m,
      'the hub confirms first; the deadline comes later',
    );
    t.equal(get('/etc/vigil/os-version')?.content, '0.0.0\n', 'the default OS version');
    t.equal(
      rootOverlay(board, planLayout(board.sizes), '2.1.0').find(
        (f) => f.path === '/etc/vigil/os-version',
      )?.content,
      '2.1.0\n',
    );
    t.match(
      get('/usr/lib/vigil/rauc-bootloader')?.content,
      /^exec \/opt\/vigil\/node\/bin\/node \/opt\/vigil\/dist\/bin\/rauc-backend\.js "\$@"$/m,
    );
  }
  // `rauc install` asks `rauc service` over D-Bus: without its unit, activation file and bus
  // policy (Debian's rauc-service) no OS update can install
  t.ok(RUNTIME_PACKAGES.includes('rauc') && RUNTIME_PACKAGES.includes('rauc-service'));
});

t.test('root overlay: no password, empty machine-id, units, mounts', async (t) => {
  const files = rootOverlay(pi, layout);
  const get = (p: string) => files.find((f) => f.path === p);
  t.equal(get('/etc/machine-id')?.content, '');
  t.equal(get('/etc/resolv.conf')?.content, '');
  t.equal(get('/etc/hostname')?.content, 'vigil\n');
  // the hub refuses to start without a config file; the shipped one parses with its schema
  const { parseConfig } = await import('../../firmware/config/config.js');
  t.equal(
    parseConfig(JSON.parse(get('/etc/vigil/config.json')?.content ?? 'null')).mode,
    'production',
  );
  const twinCfg = rootOverlay(twin, planLayout(twin.sizes)).find(
    (f) => f.path === '/etc/vigil/config.json',
  );
  t.same(parseConfig(JSON.parse(twinCfg?.content ?? 'null')).storage.keySources, ['dev-keyfile']);
  t.match(get('/etc/modules-load.d/vigil.conf')?.content ?? '', /^bcm2835-v4l2$/m);
  t.notOk(
    get('/usr/lib/systemd/system/vigil-twin-report.service'),
    'the Pi has no twin report unit',
  );
  t.equal(get('/usr/bin/vigil')?.mode, 0o755);
  // MBR has no partition labels: the hub is told where the data partition is
  const dropIn = get('/etc/systemd/system/vigil-hub.service.d/image.conf')?.content ?? '';
  t.match(dropIn, /^Environment=VIGIL_STORAGE_DEVICE=\/dev\/disk\/by-partuuid\/5649474c-07$/m);
  t.match(dropIn, /^After=.*vigil-grow-data\.service/m);
  t.match(fstab(layout), /^PARTUUID=5649474c-03 \/boot\/vigil-provisioning vfat .*umask=0077/m);
  t.match(fstab(layout), /^PARTUUID=5649474c-01 \/boot\/firmware vfat/m);
  t.notMatch(
    fstab(layout),
    /PARTUUID=5649474c-07/,
    'the data partition is never in fstab (LUKS, opened by the hub)',
  );
  t.match(
    cliWrapper(),
    /exec \/opt\/vigil\/node\/bin\/node \/opt\/vigil\/dist\/bin\/vigil\.js "\$@"/,
  );
  t.same(unitsToEnable(pi), [
    'vigil-hub.service',
    'vigil-grow-data.service',
    'vigil-os-confirm.timer',
  ]);
  const tw = rootOverlay(twin, planLayout(twin.sizes));
  t.match(
    tw.find((f) => f.path === '/etc/modprobe.d/vigil.conf')?.content ?? '',
    /options mac80211_hwsim radios=3/,
  );
  t.ok(tw.find((f) => f.path === '/usr/lib/systemd/system/vigil-twin-report.service'));
  t.ok(tw.find((f) => f.path === '/usr/lib/systemd/system/vigil-twin-setup.service'));
  t.ok(tw.find((f) => f.path === '/usr/lib/systemd/system/vigil-twin-journey.service'));
  t.same(unitsToEnable(twin), [
    'vigil-hub.service',
    'vigil-grow-data.service',
    'vigil-os-confirm.timer',
    'vigil-twin-report.service',
    'vigil-twin-setup.service',
    'vigil-twin-journey.service',
  ]);
});

t.test('units: grow once before the hub; twin report only on request', async (t) => {
  const g = growUnit();
  t.match(g, /ConditionPathExists=!\/var\/lib\/vigil\/\.data-partition-grown/);
  t.match(g, /Before=vigil-hub.service/);
  t.match(g, /^Wants=dev-disk-by\\x2dpartuuid-5649474c\\x2d07\.device$/m);
  t.match(g, /ExecStart=\/usr\/bin\/vigil image grow-data/);
  const r = twinReportUnit();
  t.match(r, /ConditionKernelCommandLine=vigil.report=1/);
  t.match(r, /poweroff/);
  // with a journey, the journey unit powers off instead (after it ran)
  t.match(
    r,
    /grep -qw vigil\.journey=1 \/proc\/cmdline \|\| exec \/usr\/bin\/systemctl --no-block poweroff/,
  );
});

t.test('units: the twin journey hook runs only on request, setup before the hub', async (t) => {
  const s = twinSetupUnit();
  t.match(s, /^ConditionKernelCommandLine=vigil\.journey=1$/m);
  t.match(s, /^Before=vigil-hub\.service$/m);
  t.match(s, /^Wants=dev-disk-by\\x2did-virtio\\x2dvigil\\x2djourney\.device$/m);
  t.match(s, /tar -xf \/dev\/disk\/by-id\/virtio-vigil-journey -C \/run\/vigil-journey/);
  const j = twinJourneyUnit();
  t.match(j, /^ConditionKernelCommandLine=vigil\.journey=1$/m);
  t.match(j, /^After=vigil-twin-setup\.service vigil-twin-report\.service$/m);
  t.match(j, /^ExecStopPost=\/usr\/bin\/systemctl --no-block poweroff$/m);
  // the hub unit is not touched: the Pi ships neither hook
  const pi = rootOverlay(BOARDS['rpi-arm64'], planLayout(BOARDS['rpi-arm64'].sizes));
  t.notOk(pi.some((f) => /vigil-twin-(setup|journey)/.test(f.path)));
  // no longer device wait on either board: the plain twin boot would wait for the absent journey disk
  t.notOk(rootOverlay(twin, planLayout(twin.sizes)).some((f) => f.path === TWIN_SYSTEM_CONF));
  t.notOk(pi.some((f) => f.path === TWIN_SYSTEM_CONF));
  // the twin's hub watchdog is relaxed for emulation; the Pi keeps the unit's 30 s
  const dropIn = rootOverlay(twin, planLayout(twin.sizes)).find((f) => f.path === TWIN_HUB_DROPIN);
  t.equal(dropIn?.path, '/etc/systemd/system/vigil-hub.service.d/twin.conf');
  t.match(dropIn?.content, /^\[Service\]\nWatchdogSec=600s$/m);
  t.notOk(pi.some((f) => f.path === TWIN_HUB_DROPIN));
  t.notOk(unitsToEnable(BOARDS['rpi-arm64']).some((u) => u.startsWith('vigil-twin')));
});
