// OS updates A/B on the image twin itself (`vigil image build --board qemu-amd64`): its own
// kernel, initramfs and root filesystem in both root slots, systemd as PID 1 petting qemu's
// i6300esb watchdog (the image's RuntimeWatchdogSec), the shipped hub unit (which unlocks the
// data volume, where the agent downloads a bundle), RAUC 1.8's service with the image's
// system.conf and the project's bootloader backend, and the product's `vigil ota os-confirm` /
// `vigil ota os-check` against a real TUF repository that the host serves over qemu's user
// network. Bundles: `buildRootfsBundle` (what `vigil ota release --rootfs` runs), packed with
// lz4 (cheap to build and to verify under TCG): v2 from a copy of the twin's root A edited with
// debugfs (os-version, the test's RAUC keyring) — the one full OS download and write; v3..v5,
// whose behaviour is all that matters, from small roots (the pristine tree pruned: smallRoot).
// The host plays the Raspberry Pi firmware between boots (test/system/lib/pi-firmware.ts); a
// reboot ends qemu (-no-reboot).
//
//   1  v1 installs v2 (released while v1 boots); tryboot reboot
//   2  v2's trial on B: the hub is active → committed; finds v3: power cut in the RAUC write
//   3  v2 boots again (a plain boot: committed), installs v3
//   4  v3's trial: its hub fails to start → os-confirm marks it bad, plain reboot
//   5  v2 boots; finds v4, installs it
//   6  v4 hangs at boot: a SCHED_FIFO busy loop per vCPU, RT throttling off, so that nothing
//      (PID 1 included) runs → the watchdog resets the machine (QMP WATCHDOG event)
//   7  v2 boots, reports v4 rolled back; finds v5, installs it
//   8  v5's trial: power cut as soon as the twin's test unit runs
//   9  v2 boots, reports v5 rolled back, does not retry it
//
// VIGIL_OSAB_BOOTS=N ends the story after N boots (development; logged).
// The twin image: VIGIL_TWIN_IMAGE, else CI's image step's build-1, else image/out/qemu-amd64
// (SKIP when none; docs/system-tests.md, "OS updates A/B").
// It runs beside the rest of the suite (`@beside`: a second lane, started before the harness's
// guest is built; ~18 min of twin boots beside ~23 min of the harness's scenarios in session 9;
// docs/system-tests.md).
// @timeout 3600
// @beside
import { chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { run, which } from '../../../hw/os/run.js';
import { findRepo } from '../../../image/build.js';
import { partitionNumbered, readTable } from '../../../image/disk.js';
import { buildRootfsBundle, makeDevSigningKey } from '../../../ota/rauc-bundle.js';
import { initRepo, release } from '../../../ota/repo.js';
import type { RepoContext } from '../../../ota/repo.js';
import { startStaticServer } from '../../../ota/static-server.js';
import { CARD_PARTITIONS } from '../../../protocol/card-layout.js';
import { OS_VERSION_FILE, RAUC_PATHS } from '../../../protocol/rauc-system.js';
import { playPiFirmware } from '../lib/pi-firmware.js';
import { twinCard, twinImage } from '../lib/twin-card.js';
import type { BootResult, HostScenario } from '../lib/types.js';

type Behaviour = 'healthy' | 'unhealthy' | 'hang' | 'cut';

/** One boot's budget: boot + hub + a download and RAUC write under TCG on a loaded host. */
const BOOT_TIMEOUT_MS = 20 * 60_000;
const BOOTS = 9;
/**
 * lz4: fast to build on the host and to decompress under TCG, and half the bytes the guest
 * must download, hash (TUF) and verify (dm-verity) compared with no compression.
 */
const SQUASHFS_ARGS = '-comp lz4';

const MILESTONES: readonly [string, RegExp][] = [
  ['kernel', /Linux version/],
  ['systemd', /systemd\[1\]: systemd \d+/],
  ['test unit', /VIGIL-OSAB boot /],
  ['hub', /VIGIL-OSAB hub /],
  ['confirmed', /VIGIL-OSAB confirm done/],
  ['install', /VIGIL-RAUC installing /],
  ['writing', /writing data to device/],
  ['installed', /VIGIL-RAUC .*succeeded/],
  ['hang', /VIGIL-OSAB hang/],
  ['check', /VIGIL-OSAB check start/],
  ['available', /OS update available/],
  ['end', /VIGIL-OSAB (result=|check \{)/],
];

/** v3's hub: the unit fails before the hub runs (the health check's `systemctl is-active`). */
const BROKEN_HUB_DROPIN = [
  '# ota-os-ab: an OS whose hub does not start',
  '[Service]',
  'ExecStartPre=/bin/sh -c \'echo "VIGIL-OSAB v3: this OS breaks the hub"; exit 1\'',
  '',
].join('\n');

/** v4: once systemd has armed the watchdog, stop every CPU for good. */
const HANG_UNIT = [
  '[Unit]',
  'Description=ota-os-ab: an OS that hangs at boot',
  '',
  '[Service]',
  'Type=simple',
  'StandardOutput=journal+console',
  'ExecStart=/bin/bash /usr/local/sbin/osab-hang',
  '',
  '[Install]',
  'WantedBy=multi-user.target',
  '',
].join('\n');

const HANG_SCRIPT = [
  '#!/bin/bash',
  '# ota-os-ab v4: wait until PID 1 has opened the watchdog, then let nothing else run:',
  '# RT throttling off, one SCHED_FIFO 99 busy loop pinned to each CPU.',
  'until ls -l /proc/1/fd | grep -q /dev/watchdog; do sleep 1; done',
  'echo -1 > /proc/sys/kernel/sched_rt_runtime_us',
  '# the marker through printk (/dev/kmsg): on this kernel the writer itself puts it on the serial',
  '# console before the write returns; a line on stdout goes through journald, which the loops',
  '# below starve (CI once saw the reset with no marker)',
  'echo "<2>VIGIL-OSAB hang cpus=$(nproc) watchdog=$(ls -l /proc/1/fd | grep -o \'/dev/watchdog[0-9]*\')" > /dev/kmsg',
  'for c in $(seq 0 $(($(nproc) - 1))); do',
  '  taskset -c "$c" chrt -f 99 /bin/sh -c \'while :; do :; done\' &',
  'done',
  'wait',
  '',
].join('\n');

/** RAUC's D-Bus activation file (package rauc-service). */
const RAUC_DBUS_SERVICE = '/usr/share/dbus-1/system-services/de.pengutronix.rauc.service';

const SETUP_SCRIPT = '#!/bin/bash\necho "VIGIL-OSAB setup"\n';

/** VIGIL_OSAB_BOOTS reached: the story ends early, on purpose. */
class StopAfter extends Error {
  constructor(boots: number) {
    super(`stopped after ${String(boots)} boots`);
  }
}

interface Boot {
  readonly n: number;
  readonly partition: number;
  readonly tryboot: boolean;
  readonly result: BootResult;
  /** `slot=A partition=1 tryboot=0 version=1.0.0 ...` from the twin's test unit. */
  readonly booted: string;
  readonly outcomes: readonly Record<string, unknown>[];
  readonly check: readonly Record<string, unknown>[];
}

/** Run debugfs commands on an ext4 image (`file` or `file?offset=N`); argv only. */
async function debugfs(target: string, cmds: readonly string[], work: string): Promise<void> {
  const script = join(work, 'debugfs.cmds');
  await writeFile(script, cmds.join('\n') + '\n');
  await run('debugfs', ['-w', '-f', script, target], { timeoutMs: 300_000 });
}

async function catFile(target: string, path: string): Promise<string> {
  const r = await run('debugfs', ['-R', `cat ${path}`, target], { timeoutMs: 120_000 });
  return r.stdout.toString('utf8');
}

/**
 * Write files into an ext4 image with debugfs (rm + write: debugfs never overwrites), then
 * read each back: a write debugfs refused is an error here, not a silent gap.
 */
async function putFiles(
  target: string,
  files: readonly { path: string; content: string; mode: number }[],
  symlinks: readonly { path: string; to: string }[],
  work: string,
): Promise<void> {
  await mkdir(work, { recursive: true });
  const cmds: string[] = [];
  for (const [i, f] of files.entries()) {
    const src = join(work, `put-${String(i)}`);
    await writeFile(src, f.content);
    const dir = f.path.slice(0, f.path.lastIndexOf('/'));
    cmds.push(`mkdir ${dir}`, `rm ${f.path}`, `write ${src} ${f.path}`);
    cmds.push(`set_inode_field ${f.path} mode 0${(0o100000 | f.mode).toString(8)}`);
  }
  for (const s of symlinks) {
    const dir = s.path.slice(0, s.path.lastIndexOf('/'));
    cmds.push(`mkdir ${dir}`, `rm ${s.path}`, `symlink ${s.path} ${s.to}`);
  }
  await debugfs(target, cmds, work);
  for (const f of files)
    if ((await catFile(target, f.path)) !== f.content)
      throw new Error(`debugfs did not write ${f.path} into ${target}`);
}

/**
 * What a small test OS leaves out of the twin's root (paths relative to /): ffmpeg's codec
 * and GPU libraries (the hub's camera pipeline), documentation, and the app's object detector
 * and S3 client; and every kernel module but KEPT_MODULES. The small versions never record,
 * unlock the data volume or install anything.
 */
const PRUNED = [
  'usr/share/doc',
  'usr/share/man',
  'usr/share/locale',
  'usr/share/perl',
  'usr/share/fonts',
  'usr/share/icons',
  'boot',
  ...[
    'dri',
    'mfx',
    'lapack',
    'blas',
    'perl*',
    'libLLVM*',
    'libz3*',
    'libx26*',
    'libcodec2*',
    'libmfx*',
    'libav*',
    'libsw*',
    'libpostproc*',
    'libplacebo*',
    'librsvg*',
    'libgallium*',
    'libvulkan*',
    'libOpenCL*',
    'libSvtAv1*',
    'librav1e*',
    'libaom*',
    'libdav1d*',
    'libvpx*',
    'libtesseract*',
    'liblept*',
    'libicu*',
    'libgfortran*',
    'libopenmpt*',
    'libzvbi*',
    'libflite*',
  ].map((f) => `usr/lib/x86_64-linux-gnu/${f}`),
  'opt/vigil/node_modules/onnxruntime-node',
  'opt/vigil/node_modules/@aws-sdk',
  'opt/vigil/node_modules/@smithy',
];

/** The kernel modules a small test OS keeps: the boot FAT, the watchdog, virtio, dm. */
const KEPT_MODULES = '^\\./(fs/(fat|nls)|drivers/(watchdog|virtio|block|char|md)|crypto|lib|arch)/';

/**
 * A small test OS from the pristine root: its tree (debugfs rdump), pruned (PRUNED; without
 * the app and node too when `keepApp` is false), the version's files written in, packed
 * into an ext4 image just big enough (RAUC writes the image, not the whole slot).
 */
async function smallRoot(
  pristine: string,
  out: string,
  keepApp: boolean,
  files: readonly { path: string; content: string; mode: number }[],
  symlinks: readonly { path: string; to: string }[],
  tree: string,
): Promise<void> {
  await rm(tree, { recursive: true, force: true });
  await mkdir(tree, { recursive: true });
  await run('debugfs', ['-R', `rdump / ${tree}`, pristine], { timeoutMs: 600_000 });
  const drop = keepApp ? PRUNED : [...PRUNED, 'opt/vigil', 'usr/local/bin/node'];
  // the globs are the shell's, inside the tree only (cwd)
  await run('sh', ['-c', `rm -rf -- ${drop.join(' ')}`], { cwd: tree, timeoutMs: 300_000 });
  await run(
    'sh',
    [
      '-c',
      'cd usr/lib/modules/*/kernel && find . -name "*.ko*" | grep -Ev "$1" | xargs -r rm -f',
      'prune',
      KEPT_MODULES,
    ],
    { cwd: tree, timeoutMs: 300_000 },
  );
  for (const f of files) {
    const p = join(tree, f.path);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, f.content, { mode: f.mode });
    await chmod(p, f.mode);
  }
  for (const l of symlinks) {
    const p = join(tree, l.path);
    await mkdir(dirname(p), { recursive: true });
    await rm(p, { force: true });
    await symlink(l.to, p);
  }
  const du = await run('du', ['-sx', '--block-size=1M', tree], { timeoutMs: 300_000 });
  const mib = Number(du.stdout.toString('utf8').split(/\s/)[0]);
  if (!Number.isFinite(mib) || mib <= 0) throw new Error(`du of ${tree}: ${du.stdout.toString()}`);
  await rm(out, { force: true });
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, out, `${String(Math.ceil(mib * 1.15) + 64)}M`], {
    timeoutMs: 600_000,
  });
  await rm(tree, { recursive: true, force: true });
}

const scenario: HostScenario = async (h) => {
  const missing: string[] = [];
  for (const tool of ['rauc', 'mcopy', 'mksquashfs', 'debugfs', 'mkfs.ext4'])
    if ((await which(tool)) === null) missing.push(tool);
  if (missing.length > 0) return { skip: `not installed on the host: ${missing.join(', ')}` };
  const image = await twinImage();
  if (image === undefined)
    return {
      skip: 'no twin image (CI image step, image/out/qemu-amd64, or VIGIL_TWIN_IMAGE)',
    };
  const work = h.workDir;
  const t0 = Date.now();
  const secs = (from: number) => Math.round((Date.now() - from) / 1000);
  h.log(`twin image: ${image}`);

  // release side: RAUC signing key, TUF repository served to the twin over qemu's network
  const { cert, key } = await makeDevSigningKey(join(work, 'rauc-keys'));
  const keyring = await readFile(cert, 'utf8');
  const ctx: RepoContext = {
    repoDir: join(work, 'repo'),
    keysDir: join(work, 'tuf-keys'),
    fs: new DurableFs(),
    scryptLogN: 12,
  };
  await initRepo(ctx);
  const server = await startStaticServer(ctx.repoDir);
  const port = new URL(server.url).port;

  // the card: the twin image, provisioned (the hub reaches its pairing state), 2 GiB bigger
  // (first boot grows the data partition, where the agent downloads a bundle), root A made
  // v1 with the test's keyring
  const { card } = await twinCard({ image, workDir: work, grow: '2G', batchId: 'ota-os-ab' });
  const table = await readTable(card);
  const rootA = partitionNumbered(table, CARD_PARTITIONS['root-a'], card);
  const rootAt = `${card}?offset=${String(rootA.start * 512)}`;
  // the pristine root A, before v1's edits: what every version starts from
  const pristine = join(work, 'root-pristine.ext4');
  await run(
    'dd',
    [
      `if=${image}`,
      `of=${pristine}`,
      'bs=4M',
      'iflag=skip_bytes,count_bytes',
      `skip=${String(rootA.start * 512)}`,
      `count=${String(rootA.size * 512)}`,
      'conv=sparse',
      'status=none',
    ],
    { timeoutMs: 10 * 60_000 },
  );
  // An image built before the image's package list had rauc-service has no `rauc service`
  // (`rauc install` then fails at D-Bus): its files from Debian's package, into every root.
  const serviceFiles: { path: string; content: string; mode: number }[] = [];
  if ((await catFile(pristine, RAUC_DBUS_SERVICE)) === '') {
    const deb = join(work, 'rauc-service');
    await mkdir(deb, { recursive: true });
    await run('apt-get', ['download', 'rauc-service'], { cwd: deb, timeoutMs: 300_000 });
    const x = join(deb, 'x');
    await run('sh', ['-c', 'dpkg-deb -x rauc-service_*.deb x'], { cwd: deb, timeoutMs: 60_000 });
    for (const [from, to, mode] of [
      ['lib/systemd/system/rauc.service', '/usr/lib/systemd/system/rauc.service', 0o644],
      [RAUC_DBUS_SERVICE.slice(1), RAUC_DBUS_SERVICE, 0o644],
      [
        'usr/share/dbus-1/system.d/de.pengutronix.rauc.conf',
        '/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf',
        0o644,
      ],
      ['usr/share/rauc/rauc-service.sh', '/usr/share/rauc/rauc-service.sh', 0o755],
    ] as const)
      serviceFiles.push({ path: to, content: await readFile(join(x, from), 'utf8'), mode });
    h.log(
      'the twin image has no rauc-service (built before it was added): installed from its .deb',
    );
  }
  const osFiles = (version: string) => [
    { path: OS_VERSION_FILE, content: `${version}\n`, mode: 0o644 },
    { path: RAUC_PATHS.keyring, content: keyring, mode: 0o644 },
    ...serviceFiles,
  ];
  await putFiles(rootAt, osFiles('1.0.0'), [], work);

  // v2: a copy of the pristine root, edited; v3..v5: small roots (the pristine tree pruned of
  // what their behaviour does not use), so that only v2 is a full OS download and write.
  // Bundled one after the other in the background while the twin boots; each released (TUF)
  // only when the story needs it.
  const plan: readonly [string, Behaviour][] = [
    ['2.0.0', 'healthy'],
    ['3.0.0', 'unhealthy'],
    ['4.0.0', 'hang'],
    ['5.0.0', 'cut'],
  ];
  const bundles = new Map<string, Promise<string>>();
  let chain: Promise<unknown> = Promise.resolve();
  for (const [version, behaviour] of plan) {
    const out = join(work, `vigil-os-${version}.raucb`);
    const built = chain.then(async () => {
      const tb = Date.now();
      const root = join(work, `root-${version}.ext4`);
      const files = osFiles(version);
      const links: { path: string; to: string }[] = [];
      if (behaviour === 'unhealthy')
        files.push({
          path: '/etc/systemd/system/vigil-hub.service.d/zz-ota-os-ab-broken.conf',
          content: BROKEN_HUB_DROPIN,
          mode: 0o644,
        });
      if (behaviour === 'hang') {
        files.push(
          { path: '/etc/systemd/system/ota-os-ab-hang.service', content: HANG_UNIT, mode: 0o644 },
          { path: '/usr/local/sbin/osab-hang', content: HANG_SCRIPT, mode: 0o755 },
        );
        links.push({
          path: '/etc/systemd/system/multi-user.target.wants/ota-os-ab-hang.service',
          to: '/etc/systemd/system/ota-os-ab-hang.service',
        });
      }
      if (behaviour === 'healthy') {
        await run('cp', ['--sparse=always', pristine, root], { timeoutMs: 10 * 60_000 });
        await putFiles(root, files, links, join(work, `edit-${version}`));
      } else {
        // v3 runs `vigil ota os-confirm` (node and the app stay); v4 and v5 never get that far
        await smallRoot(
          pristine,
          root,
          behaviour === 'unhealthy',
          files,
          links,
          join(work, `tree-${version}`),
        );
      }
      const r = await buildRootfsBundle({
        image,
        rootfs: root,
        board: 'qemu-amd64',
        version,
        cert,
        key,
        out,
        workDir: `${out}.work`,
        mksquashfsArgs: SQUASHFS_ARGS,
      });
      await rm(root, { force: true });
      h.log(
        `bundle ${version} (${behaviour}): ${String(Math.round(r.bytes / 2 ** 20))} MiB from a ${String(Math.round(r.rootfsBytes / 2 ** 20))} MiB root, built in ${String(secs(tb))} s`,
      );
      return out;
    });
    built.catch(() => undefined);
    chain = built.catch(() => undefined);
    bundles.set(version, built);
  }
  const publish = async (version: string): Promise<void> => {
    const out = bundles.get(version);
    if (out === undefined) throw new Error(`no bundle planned for ${version}`);
    const tp = Date.now();
    await release(ctx, {
      bundle: await readFile(await out),
      channel: 'stable',
      version,
      kind: 'rootfs',
    });
    await rm(await out, { force: true });
    // the twin's test unit waits for this before its check (boot 1 starts before v2 is out)
    await writeFile(join(ctx.repoDir, 'osab-ready'), `${version}\n`);
    h.log(`released ${version} (waited ${String(secs(tp))} s)`);
  };

  // the journey disk of the twin's test units: setup.sh (before the hub), journey.sh, the
  // trusted root and the repository's address as the twin sees the host
  const jdir = join(work, 'journey');
  await mkdir(jdir, { recursive: true });
  await writeFile(join(jdir, 'setup.sh'), SETUP_SCRIPT);
  await copyFile(
    join(await findRepo(), 'test/system/scenarios/_ota-os-ab-twin.sh'),
    join(jdir, 'journey.sh'),
  );
  await copyFile(join(ctx.repoDir, 'metadata', '1.root.json'), join(jdir, 'root.json'));
  await writeFile(join(jdir, 'repo-url'), `http://10.0.2.2:${port}\n`);
  const jtar = join(work, 'journey.tar');
  await run('tar', ['-cf', jtar, '--owner=0', '--group=0', '-C', jdir, '.'], { timeoutMs: 60_000 });
  h.log(`release side and card ready in ${String(secs(t0))} s`);

  // VIGIL_OSAB_BOOTS=N: stop (pass, said in the log) after N boots and their checks
  const limit = Number(process.env.VIGIL_OSAB_BOOTS ?? String(BOOTS));
  let n = 0;
  const boot = async (what: string, killAtLine?: string): Promise<Boot> => {
    if (n >= limit) throw new StopAfter(n);
    n++;
    const fw = await playPiFirmware(card, work);
    const tb = Date.now();
    const seen: string[] = [];
    const marks = new Set<string>();
    const result = await h.boot({
      kernel: fw.kernel,
      ...(fw.initrd !== '' ? { initrd: fw.initrd } : {}),
      append: `${fw.append} vigil.journey=1 systemd.show_status=1`,
      disks: [
        { file: card, format: 'raw' },
        { file: jtar, format: 'raw', readonly: true, serial: 'vigil-journey' },
      ],
      memoryMiB: 2048,
      timeoutMs: BOOT_TIMEOUT_MS,
      consoleLog: join(work, `boot-${String(n)}.console.log`),
      extraArgs: [
        // the SoC watchdog's stand-in (qemu's default action on expiry: reset)
        '-device',
        'i6300esb',
        // the TUF repository on the host (10.0.2.2)
        '-nic',
        'user,model=virtio-net-pci',
      ],
      qmpEvents: true,
      onLine: (line) => {
        for (const [name, re] of MILESTONES) {
          if (marks.has(name) || !re.test(line)) continue;
          marks.add(name);
          seen.push(`${name} ${String(secs(tb))}`);
        }
      },
      ...(killAtLine !== undefined ? { killAtLine } : {}),
    });
    const after = (prefix: string) =>
      result.lines
        .filter((l) => l.includes(prefix))
        .map((l) => l.slice(l.indexOf(prefix) + prefix.length));
    const json = (prefix: string) =>
      after(prefix)
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const b: Boot = {
      n,
      partition: fw.partition,
      tryboot: fw.tryboot,
      result,
      booted: after('VIGIL-OSAB boot ')[0] ?? 'no test unit',
      outcomes: json('VIGIL-OSAB outcome '),
      check: json('VIGIL-OSAB check '),
    };
    h.log(
      `boot ${String(n)} (${what}): partition ${String(fw.partition)}${fw.tryboot ? ' (tryboot)' : ''}, ${b.booted}, ${result.outcome} in ${String(secs(tb))} s [${seen.join(', ')}]; events ${result.events.join(' ')}; outcomes ${JSON.stringify(b.outcomes)}; check ${JSON.stringify(b.check)}`,
    );
    const failed = after('VIGIL-OSAB result=fail')[0];
    if (failed !== undefined) throw new Error(`boot ${String(n)} (${what}): ${failed}`);
    return b;
  };
  const expect = (cond: boolean, what: string, b: Boot): void => {
    if (!cond)
      throw new Error(
        `boot ${String(b.n)}: ${what} (partition ${String(b.partition)}, tryboot ${String(b.tryboot)}, booted ${b.booted}, outcome ${b.result.outcome}, events ${b.result.events.join(' ')}, outcomes ${JSON.stringify(b.outcomes)}, check ${JSON.stringify(b.check)}; console ${b.result.consoleLog})`,
      );
  };
  const on = (b: Boot, slot: 'A' | 'B', tryboot: boolean, version: string) =>
    b.booted.startsWith(
      `slot=${slot} partition=${slot === 'A' ? '1' : '2'} tryboot=${tryboot ? '1' : '0'} version=${version} `,
    );
  /**
   * RAUC's success, then the agent's tryboot reboot: the guest ends qemu itself (the journey
   * unit's stop may turn the reboot into a power-off; the next boot shows the tryboot flag).
   */
  const installed = (b: Boot) =>
    b.result.lines.some((l) => /VIGIL-RAUC .*succeeded/.test(l)) &&
    b.result.outcome === 'exited' &&
    b.result.events.some((e) => e.startsWith('SHUTDOWN')) &&
    !b.result.events.some((e) => e.startsWith('WATCHDOG'));

  let passed = false;
  try {
    // 1. v1 installs v2 (the full OS, downloaded to the data volume)
    // v2 is bundled and released while v1 boots: its check waits for the release
    const released = publish('2.0.0');
    released.catch(() => undefined);
    let b = await boot('v1 installs v2');
    await released;
    expect(on(b, 'A', false, '1.0.0'), 'v1 on A', b);
    expect(b.outcomes.length === 0, 'nothing to settle on v1', b);
    expect(installed(b), 'v2 installed by RAUC, then a tryboot reboot', b);
    await publish('3.0.0');

    // 2. v2's trial: the hub is active → committed; it finds v3 at once: power cut in the
    // RAUC write (slot A, v1's, half written)
    b = await boot('v2 trial, finds v3, power cut in the RAUC write', 'writing data to device');
    expect(on(b, 'B', true, '2.0.0'), 'trial of v2 on B', b);
    expect(
      b.outcomes.some((o) => o.kind === 'committed' && o.version === '2.0.0'),
      'v2 committed',
      b,
    );
    expect(b.result.outcome === 'killed', 'power cut during the RAUC write', b);

    // 3. a plain boot runs the committed v2 (slot B); it installs v3 again
    b = await boot('v2 after the cut write (a plain boot), installs v3');
    expect(on(b, 'B', false, '2.0.0'), 'v2 boots after a plain reboot: committed', b);
    expect(b.outcomes.length === 0, 'nothing to settle after the cut write', b);
    expect(installed(b), 'v3 installed by RAUC, then a tryboot reboot', b);

    // 4. v3's hub fails → marked bad, a plain reboot → v2 (committed)
    b = await boot('v3 trial (its hub fails)');
    expect(on(b, 'A', true, '3.0.0'), 'trial of v3 on A', b);
    expect(
      // the drop-in's echo goes to the journal, not the console: the unit's state says it
      b.result.lines.some((l) => /VIGIL-OSAB hub state=(failed|\S+ restarts=[1-9])/.test(l)),
      "v3's hub failed",
      b,
    );
    expect(
      b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '3.0.0'),
      'v3 rolled back',
      b,
    );
    await publish('4.0.0');
    b = await boot('v2 after v3, finds v4');
    expect(on(b, 'B', false, '2.0.0'), 'v2 after the failed v3', b);
    expect(installed(b), 'v4 installed by RAUC, then a tryboot reboot', b);

    // 4. v4 hangs at boot → the hardware watchdog resets the machine → v2
    b = await boot('v4 trial (hangs)');
    expect(on(b, 'A', true, '4.0.0') || b.booted === 'no test unit', 'trial of v4 on A', b);
    expect(b.partition === 1 && b.tryboot, 'trial of v4 on A', b);
    expect(
      b.result.lines.some((l) => l.includes('VIGIL-OSAB hang')),
      'v4 hung every CPU',
      b,
    );
    expect(
      b.result.outcome === 'exited' &&
        b.result.events.some((e) => e.startsWith('WATCHDOG') && e.includes('"reset"')),
      'reset by the watchdog',
      b,
    );
    await publish('5.0.0');
    b = await boot('v2 after the watchdog, finds v5');
    expect(on(b, 'B', false, '2.0.0'), 'v2 after the watchdog reset', b);
    expect(
      b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '4.0.0'),
      'v4 reported rolled back',
      b,
    );
    expect(installed(b), 'v5 installed by RAUC, then a tryboot reboot', b);

    // 5. power cut during v5's trial → v2
    b = await boot('v5 trial, power cut', 'VIGIL-OSAB boot slot=A partition=1 tryboot=1');
    expect(b.partition === 1 && b.tryboot && b.result.outcome === 'killed', 'cut in v5', b);
    b = await boot('after the cut trial');
    expect(on(b, 'B', false, '2.0.0'), 'v2 after the cut trial', b);
    expect(
      b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '5.0.0'),
      'v5 reported rolled back',
      b,
    );
    expect(
      b.check.some((c) => c.kind === 'up-to-date'),
      'v5 is not retried',
      b,
    );
    if (n !== BOOTS) throw new Error(`${String(n)} boots, planned ${String(BOOTS)}`);
    h.log(`done: ${String(n)} boots in ${String(secs(t0))} s`);
    passed = true;
  } catch (e) {
    if (!(e instanceof StopAfter)) throw e;
    h.log(
      `stopped after ${String(n)} of ${String(BOOTS)} boots (VIGIL_OSAB_BOOTS) in ${String(secs(t0))} s`,
    );
    passed = true;
  } finally {
    await server.close();
    await rm(pristine, { force: true });
    // a failed story keeps its card (sparse): the slots' journals say what the twin did
    // (`debugfs -R "rdump /var/log/journal DIR" card.img?offset=...`, then `journalctl -D`)
    if (passed) await rm(card, { force: true });
    else h.log(`the card is kept for a look: ${card}`);
  }
  return undefined;
};
export default scenario;
