import t from 'tap';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BOARDS } from '../../image/boards.js';
import {
  BinfmtError,
  ensureBinfmt,
  hostArch,
  initramfsHooks,
  HEADLESS_EXCLUDES,
  mmdebstrapArgs,
  mountsUnder,
  packagesFor,
  parseDpkgStatus,
  unmountUnder,
} from '../../image/rootfs.js';

const pi = BOARDS['rpi-arm64'];
const twin = BOARDS['qemu-amd64'];

t.test(
  'packages: Debian kernel + raspi-firmware for the Pi; the twin has no Pi firmware',
  async (t) => {
    const p = packagesFor(pi, 'debian');
    for (const x of [
      'linux-image-arm64',
      'raspi-firmware',
      'firmware-brcm80211',
      'hostapd',
      'wpasupplicant',
      'cryptsetup-bin',
      'dbus',
      'initramfs-tools',
    ]) {
      t.ok(p.includes(x), x);
    }
    t.notOk(p.includes('openssh-server'), 'no SSH server');
    t.notOk(p.includes('nodejs'), "Debian's Node 18 is not used");
    const tw = packagesFor(twin, 'debian');
    t.ok(tw.includes('linux-image-amd64'));
    t.notOk(tw.includes('raspi-firmware'));
    const rpi = packagesFor(pi, 'raspberrypi');
    t.ok(rpi.includes('linux-image-rpi-v8'));
    t.ok(rpi.includes('raspi-utils'), 'vcmailbox for the customer-OTP key source');
    t.notOk(rpi.includes('linux-image-arm64'));
    t.same(p, [...p].sort(), 'sorted (stable command line)');
  },
);

t.test('mmdebstrap command line', async (t) => {
  const a = mmdebstrapArgs({
    board: pi,
    target: '/w/rootfs',
    kernelSource: 'debian',
    aptCache: '/c/apt',
  });
  t.ok(a.includes('--arch=arm64'));
  t.ok(a.includes('--mode=root'));
  t.ok(a.includes('--format=directory'));
  t.ok(a.includes('--aptopt=Apt::Install-Recommends "false"'));
  t.ok(a.some((x) => x.startsWith('--include=') && x.includes('raspi-firmware')));
  t.ok(
    a.some((x) => x.includes('dpkg-divert') && x.includes('--add /usr/sbin/update-initramfs')),
    'mkinitramfs diverted during install',
  );
  t.ok(
    a.some((x) => x === '--customize-hook=chroot "$1" update-initramfs -c -k all'),
    'and run once at the end',
  );
  // the Pi's initramfs carries only what mounting root from the SD card needs (MODULES=list),
  // written before the single mkinitramfs run
  const list = a.indexOf(
    '--customize-hook=printf "MODULES=list\\n" > "$1/etc/initramfs-tools/conf.d/vigil-modules.conf"',
  );
  const mods = a.findIndex((x) => x.includes('>> "$1/etc/initramfs-tools/modules"'));
  const mk = a.indexOf('--customize-hook=chroot "$1" update-initramfs -c -k all');
  t.ok(list >= 0 && mods > list && mk > mods, 'module list before mkinitramfs');
  for (const m of ['sdhci-iproc', 'bcm2835', 'ext4'])
    t.match(a[mods] ?? '', new RegExp(` ${m}( |$)`.replace('-', '\\-')), m);
  t.ok(a.includes('--setup-hook=sync-in /c/apt /var/cache/apt/archives/'));
  t.ok(a.includes('--customize-hook=sync-out /var/cache/apt/archives /c/apt'));
  const tail = a.slice(a.indexOf('bookworm'));
  t.same(tail, [
    'bookworm',
    '/w/rootfs',
    'deb http://deb.debian.org/debian bookworm main non-free-firmware',
    'deb http://deb.debian.org/debian bookworm-updates main non-free-firmware',
    'deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware',
  ]);
  const b = mmdebstrapArgs({
    board: twin,
    target: '/w',
    kernelSource: 'debian',
    mirror: 'http://m/debian',
  });
  t.ok(b.includes('deb http://m/debian bookworm main'));
  t.notOk(
    b.some((x) => x.includes('sync-in')),
    'no cache hooks without a cache',
  );
  t.throws(
    () => mmdebstrapArgs({ board: pi, target: '/w', kernelSource: 'raspberrypi' }),
    /--rpi-keyring/,
  );
  const r = mmdebstrapArgs({
    board: pi,
    target: '/w',
    kernelSource: 'raspberrypi',
    rpiKeyring: '/k.gpg',
  });
  t.ok(r.includes('--keyring=/k.gpg'));
  t.ok(r.includes('deb [signed-by=/k.gpg] http://archive.raspberrypi.com/debian bookworm main'));
});

t.test('dpkg status -> manifest entries (installed only, sorted)', async (t) => {
  const status = [
    'Package: zlib1g\nStatus: install ok installed\nArchitecture: arm64\nVersion: 1:1.2.13.dfsg-1',
    'Package: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134',
    'Package: gone\nStatus: deinstall ok config-files\nArchitecture: arm64\nVersion: 1',
  ].join('\n\n');
  t.same(parseDpkgStatus(status), [
    { name: 'adduser', version: '3.134', arch: 'all' },
    { name: 'zlib1g', version: '1:1.2.13.dfsg-1', arch: 'arm64' },
  ]);
});

t.test('binfmt_misc: native needs nothing; registration written; clear errors', async (t) => {
  t.equal(await ensureBinfmt(hostArch()), 'native');
  const dir = t.testdir({ binfmt: { register: '' }, conf: {} });
  const binfmt = join(dir, 'binfmt');
  const conf = join(dir, 'conf');
  const other = hostArch() === 'amd64' ? 'arm64' : 'amd64';
  const q = other === 'arm64' ? 'aarch64' : 'x86_64';
  await t.rejects(ensureBinfmt(other, undefined, binfmt, conf), /qemu-user-static/);
  await writeFile(
    join(conf, `qemu-${q}.conf`),
    `# comment\n:qemu-${q}:M::\\x7fELF:mask:/usr/libexec/qemu-binfmt/${q}-binfmt-P:OCPF\n`,
  );
  t.equal(await ensureBinfmt(other, undefined, binfmt, conf), 'registered');
  t.match(await readFile(join(binfmt, 'register'), 'utf8'), new RegExp(`^:qemu-${q}:M::`));
  await writeFile(join(binfmt, `qemu-${q}`), 'enabled\ninterpreter /x\n');
  t.equal(await ensureBinfmt(other, undefined, binfmt, conf), 'already');
  await writeFile(join(binfmt, `qemu-${q}`), 'disabled\n');
  await t.rejects(ensureBinfmt(other, undefined, binfmt, conf), /is disabled/);
  // binfmt_misc not mounted and the mount fails
  const unmounted = join(dir, 'nomount');
  await mkdir(unmounted);
  const failingMount = () => Promise.reject(new Error('mount: permission denied'));
  const err = await ensureBinfmt(other, failingMount, unmounted, conf).catch((e: unknown) => e);
  t.ok(err instanceof BinfmtError);
  t.match((err as Error).message, /binfmt_misc is not mounted .* cannot run/);
  await t.rejects(ensureBinfmt('s390x', undefined, binfmt, conf), /no qemu-user emulation known/);
});

t.test('initramfs module list: none means Debian default; names are checked', async (t) => {
  t.same(initramfsHooks([]), []);
  t.equal(initramfsHooks(['ext4', 'virtio_blk']).length, 2);
  t.throws(() => initramfsHooks(['ext4; rm -rf /']), /invalid kernel module name/);
  const twinArgs = mmdebstrapArgs({ board: twin, target: '/w', kernelSource: 'debian' });
  t.equal(
    twinArgs.some((x) => x.includes('MODULES=list')),
    twin.initramfsModules.length > 0,
    'the twin writes a module list exactly when its board data has one',
  );
});

t.test('mountsUnder: leftovers of an interrupted mmdebstrap, deepest first', async (t) => {
  const info = [
    '22 1 0:21 / / rw - ext4 /dev/vda rw',
    '30 22 0:5 / /proc rw - proc proc rw',
    '91 22 0:5 / /w/image/.cache/work/rpi-arm64/rootfs/proc rw - proc proc rw',
    '92 22 0:6 / /w/image/.cache/work/rpi-arm64/rootfs/sys rw - sysfs sys rw',
    '93 22 0:7 / /w/image/.cache/work/rpi-arm64/rootfs/dev/pts rw - devpts devpts rw',
    '94 22 0:8 / /w/image/.cache/work/rpi-arm64/rootfs-other rw - tmpfs t rw',
    '95 22 0:9 / /w/image/.cache/work/rpi-arm64/rootfs/my\\040dir rw - tmpfs t rw',
    '',
  ].join('\n');
  t.same(mountsUnder(info, '/w/image/.cache/work/rpi-arm64/rootfs/'), [
    '/w/image/.cache/work/rpi-arm64/rootfs/dev/pts',
    '/w/image/.cache/work/rpi-arm64/rootfs/sys',
    '/w/image/.cache/work/rpi-arm64/rootfs/proc',
    '/w/image/.cache/work/rpi-arm64/rootfs/my dir',
  ]);
  t.same(mountsUnder(info, '/nothing'), []);
  const dir = t.testdir({ mountinfo: info });
  const calls: string[][] = [];
  const got = await unmountUnder(
    '/w/image/.cache/work/rpi-arm64/rootfs',
    async (cmd, args) => {
      calls.push([cmd, ...args]);
      return { stdout: Buffer.alloc(0), stderr: '', exitCode: 0 };
    },
    join(dir, 'mountinfo'),
  );
  t.equal(got.length, 4);
  t.same(calls[0], ['umount', '--lazy', '/w/image/.cache/work/rpi-arm64/rootfs/dev/pts']);
});

t.test('headless root: dpkg leaves out the GPU drivers, never what ffmpeg links', async (t) => {
  const args = mmdebstrapArgs({ board: pi, target: '/w', kernelSource: 'debian' });
  for (const p of HEADLESS_EXCLUDES) t.ok(args.includes(`--dpkgopt=path-exclude=${p}`), p);
  // dpkg matches with fnmatch(3) without FNM_PATHNAME: `*` crosses "/"
  const excluded = (path: string): boolean =>
    HEADLESS_EXCLUDES.some((p) =>
      new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(path),
    );
  for (const gone of [
    '/usr/lib/aarch64-linux-gnu/dri/vc4_dri.so',
    '/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so',
    '/usr/lib/aarch64-linux-gnu/libLLVM-15.so.1',
    '/usr/lib/x86_64-linux-gnu/libz3.so.4',
    '/usr/lib/x86_64-linux-gnu/libmfxhw64.so.1.35',
    '/usr/lib/x86_64-linux-gnu/mfx/libmfx_h264la_hw64.so',
  ])
    t.ok(excluded(gone), `left out: ${gone}`);
  for (const kept of [
    '/usr/lib/aarch64-linux-gnu/libavcodec.so.59.37.100',
    '/usr/lib/x86_64-linux-gnu/libmfx.so.1',
    '/usr/lib/aarch64-linux-gnu/libx264.so.164',
    '/usr/lib/aarch64-linux-gnu/libGL.so.1',
    '/usr/lib/aarch64-linux-gnu/libdrm.so.2',
    '/usr/bin/ffmpeg',
  ])
    t.notOk(excluded(kept), `kept: ${kept}`);
});
