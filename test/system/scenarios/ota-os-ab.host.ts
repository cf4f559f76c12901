// OS updates A/B in qemu, with the real RAUC 1.8 (`rauc service`, `rauc install` of signed
// verity bundles through device-mapper in the guest kernel), the project's bootloader backend,
// the hub's OS agent (bin/hub-os.ts) and a real TUF repository. The host plays the Raspberry
// Pi firmware between boots (test/system/lib/pi-firmware.ts): autoboot.txt and the one-shot
// tryboot flag on the card's boot FAT choose the boot partition, whose kernel and cmdline.txt
// boot. A reboot is a power-off. The hardware watchdog is qemu's i6300esb, armed and petted
// in the guest as systemd's RuntimeWatchdogSec (the image's own value) arms and pets the
// Pi's bcm2835 watchdog; when it bites, qemu resets the machine, which with -no-reboot ends
// qemu: the host sees QMP's WATCHDOG event and plays the firmware again.
//
//   1-2  v1 finds v2: power cut during the RAUC write → v1 boots; v2 installed again
//   3    v2's trial → healthy → committed; it finds v3 and installs it
//   4    v3's trial: health check fails → marked bad, plain reboot
//   5    a plain boot runs v2 (committed); it finds v4 and installs it
//   6    v4 hangs at boot → the watchdog resets the machine
//   7    v2 boots, reports v4 rolled back; installs v5
//   8-9  power cut during v5's trial → v2 boots, reports v5 rolled back, does not retry it
//
// What is emulated (docs/ota.md): the firmware (lib/pi-firmware.ts), the root filesystem (the
// guest's own Debian root with node and rauc; the booted slot's os-version and behaviour are
// read from the root partition its cmdline names), the initramfs (the harness's) and PID 1's
// watchdog petting (busybox watchdog with the image's RuntimeWatchdogSec; a hang = it stops).
// Nine boots, 6-11 min under TCG on the loaded 2-core host (docs/system-tests.md, "OS updates A/B").
// @timeout 1800
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { makeOsImage } from '../../../dev/fixtures/os-image.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { run, which } from '../../../hw/os/run.js';
import { BOARDS } from '../../../image/boards.js';
import {
  cliWrapper,
  IMAGE_PATHS,
  osUpdateFiles,
  WATCHDOG_CONF_PATH,
} from '../../../image/overlay.js';
import { buildRootfsBundle, makeDevSigningKey } from '../../../ota/rauc-bundle.js';
import { initRepo, release } from '../../../ota/repo.js';
import type { RepoContext } from '../../../ota/repo.js';
import { RAUC_PATHS } from '../../../protocol/rauc-system.js';
import { playPiFirmware } from '../lib/pi-firmware.js';
import type { BootResult, HostScenario } from '../lib/types.js';

type Behaviour = 'healthy' | 'unhealthy' | 'hang';

interface Boot {
  readonly partition: number;
  readonly tryboot: boolean;
  readonly result: BootResult;
  /** VT-OS-BOOT: what the guest's backend and os-version say. */
  readonly booted: string | undefined;
  readonly outcomes: readonly Record<string, unknown>[];
  readonly check: Record<string, unknown> | undefined;
}

const BOOTS = 9;
/** One boot's guest budget: 19-125 s measured, at load average 3-14 (a hang costs no more). */
const GUEST_TIMEOUT_SEC = 480;

/** Console lines whose time the scenario prints per boot (where a boot's minutes go). */
const MILESTONES: readonly [string, RegExp][] = [
  ['stage 2', /^VT-BOOTED/],
  ['slot read', /^VT-OS-ROOT/],
  ['rauc up', /^VT-OS-RAUC/],
  ['agent', /^VT-OS-BOOT/],
  ['settled', /^VT-OS-CONFIRMED/],
  ['install', /installing \S+: started/],
  ['installed', /installing `.*` succeeded/],
  ['end', /^VT-OS-(REBOOT|HANG|CHECK)/],
];

const scenario: HostScenario = async (h) => {
  const missing: string[] = [];
  for (const tool of ['rauc', 'mcopy', 'mkfs.vfat', 'mke2fs', 'sfdisk', 'mksquashfs'])
    if ((await which(tool)) === null) missing.push(tool);
  if (missing.length > 0) return { skip: `not installed on the host: ${missing.join(', ')}` };
  const stage2 = h.stage2;
  if (stage2 === undefined) throw new Error('the harness gave no project image');
  const work = h.workDir;
  const t0 = Date.now();
  const secs = (from: number) => Math.round((Date.now() - from) / 1000);

  // release side: signing key, TUF repository, one OS image per version
  const { cert, key } = await makeDevSigningKey(join(work, 'rauc-keys'));
  const ctx: RepoContext = {
    repoDir: join(work, 'in', 'repo'),
    keysDir: join(work, 'tuf-keys'),
    fs: new DurableFs(),
    scryptLogN: 12,
  };
  await initRepo(ctx);
  await copyFile(cert, join(ctx.repoDir, 'keyring.pem'));
  // The image's OS update files, written by the project's code (image/overlay.ts): RAUC's
  // system.conf from the card table, the backend's wrapper, the watchdog drop-in. The guest
  // copies them over its root (it is not the image: docs/ota.md, "The VM scenario").
  const files = join(work, 'in', 'files');
  for (const f of osUpdateFiles(BOARDS['qemu-amd64'])) {
    if (![RAUC_PATHS.systemConf, RAUC_PATHS.backend, WATCHDOG_CONF_PATH].includes(f.path)) continue;
    await mkdir(dirname(join(files, f.path)), { recursive: true });
    await writeFile(join(files, f.path), f.content, { mode: f.mode });
  }
  // and the image's `vigil` (both wrappers run /opt/vigil: the guest links it to /vigil)
  await mkdir(dirname(join(files, IMAGE_PATHS.cli)), { recursive: true });
  await writeFile(join(files, IMAGE_PATHS.cli), cliWrapper(), { mode: 0o755 });
  const kernel = await readFile(h.guest.kernel);
  const imageOf = async (version: string, behaviour: Behaviour, bootB = false) =>
    (
      await makeOsImage({
        dir: join(work, 'images'),
        version,
        kernel,
        bootB,
        files: { '/etc/vigil/test-behaviour': `${behaviour}\n` },
      })
    ).image;
  const card = join(work, 'card.img');
  await copyFile(await imageOf('1.0.0', 'healthy', true), card);
  // The bundles are built one after the other in the background, while the guest boots;
  // each is released (TUF) only when the story needs it.
  const plan: readonly [string, Behaviour][] = [
    ['2.0.0', 'healthy'],
    ['3.0.0', 'unhealthy'],
    ['4.0.0', 'hang'],
    ['5.0.0', 'healthy'],
  ];
  const bundles = new Map<string, Promise<string>>();
  let chain: Promise<unknown> = Promise.resolve();
  for (const [version, behaviour] of plan) {
    const out = join(work, `vigil-os-${version}.raucb`);
    const built = chain.then(async () => {
      const tb = Date.now();
      await buildRootfsBundle({
        image: await imageOf(version, behaviour),
        board: 'qemu-amd64',
        version,
        cert,
        key,
        out,
        workDir: `${out}.work`,
      });
      h.log(`bundle ${version} (${behaviour}) built in ${String(secs(tb))} s`);
      return out;
    });
    // a failed build surfaces where it is awaited (publish), not as an unhandled rejection
    built.catch(() => undefined);
    chain = built.catch(() => undefined);
    bundles.set(version, built);
  }
  const publish = async (version: string): Promise<void> => {
    const out = bundles.get(version);
    if (out === undefined) throw new Error(`no bundle planned for ${version}`);
    await release(ctx, {
      bundle: await readFile(await out),
      channel: 'stable',
      version,
      kind: 'rootfs',
    });
    h.log(`released ${version}`);
  };
  const inDisk = join(work, 'in.tar');
  h.log(`release side ready in ${String(secs(t0))} s`);

  let n = 0;
  const boot = async (what: string, killAtLine?: string): Promise<Boot> => {
    n++;
    await run('tar', ['-c', '-f', inDisk, '-C', join(work, 'in'), '.'], { timeoutMs: 120_000 });
    const fw = await playPiFirmware(card, work);
    const initrd = await stage2.initrd('_ota-os-ab.sh', GUEST_TIMEOUT_SEC, n, BOOTS);
    const tb = Date.now();
    const seen: string[] = [];
    const marks = new Set<string>();
    const result = await h.boot({
      kernel: fw.kernel,
      initrd,
      append: `console=ttyS0 loglevel=4 panic=-1 no_timer_check random.trust_cpu=on ${fw.append}`,
      disks: [
        { file: h.guest.rootfs, serial: 'root', snapshot: true },
        { file: stage2.projectImage, serial: 'project', readonly: true },
        { file: card, serial: 'card' },
        { file: inDisk, serial: 'in', readonly: true },
      ],
      memoryMiB: 1536,
      timeoutMs: (GUEST_TIMEOUT_SEC + 120) * 1000,
      consoleLog: join(work, `boot-${String(n)}.console.log`),
      // the SoC watchdog's stand-in (reset on expiry: qemu's default action)
      extraArgs: ['-device', 'i6300esb'],
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
    const json = (prefix: string) =>
      result.lines
        .filter((l) => l.startsWith(prefix))
        .map((l) => JSON.parse(l.slice(prefix.length)) as Record<string, unknown>);
    const b: Boot = {
      partition: fw.partition,
      tryboot: fw.tryboot,
      result,
      booted: result.lines.find((l) => l.startsWith('VT-OS-BOOT '))?.slice(11),
      outcomes: json('VT-OS-OUTCOME '),
      check: json('VT-OS-CHECK ')[0],
    };
    h.log(
      `boot ${String(n)} (${what}): partition ${String(fw.partition)}${fw.tryboot ? ' (tryboot)' : ''}, ${b.booted ?? 'no agent'}, ${result.outcome} in ${String(secs(tb))} s [${seen.join(', ')}]; events ${result.events.join(' ')}; outcomes ${JSON.stringify(b.outcomes)}; check ${JSON.stringify(b.check)}`,
    );
    const failed = result.lines.find((l) => /VT-RESULT \S+ fail/.test(l));
    if (failed !== undefined) throw new Error(`boot ${String(n)} (${what}): ${failed}`);
    return b;
  };
  const expect = (cond: boolean, what: string, b: Boot): void => {
    if (!cond)
      throw new Error(
        `boot ${String(n)}: ${what} (partition ${String(b.partition)}, tryboot ${String(b.tryboot)}, booted ${String(b.booted)}, outcome ${b.result.outcome}, events ${b.result.events.join(' ')}, outcomes ${JSON.stringify(b.outcomes)}, check ${JSON.stringify(b.check)}; console ${b.result.consoleLog})`,
      );
  };
  const rebooted = (b: Boot) => b.result.lines.some((l) => l.startsWith('VT-OS-REBOOT'));
  // the agent's check() ends in the reboot: RAUC's success line, then the tryboot power-off
  const installed = (b: Boot) =>
    b.result.lines.some((l) => /installing `.*` succeeded/.test(l)) &&
    b.result.lines.includes('VT-OS-REBOOT tryboot=1');
  const onV2 = (b: Boot) =>
    b.partition === 2 && !b.tryboot && b.booted === 'slot=b trial=0 version=2.0.0';

  // 1. power cut during the RAUC write: the committed v1 boots again and installs v2 anew
  await publish('2.0.0');
  let b = await boot('v1 finds v2, power cut in the RAUC write', 'writing data to device');
  expect(
    b.partition === 1 && !b.tryboot && b.booted === 'slot=a trial=0 version=1.0.0',
    'v1 on A',
    b,
  );
  expect(b.result.outcome === 'killed' && !installed(b), 'power cut during the RAUC write', b);
  b = await boot('v1 after the cut write, installs v2');
  expect(
    b.partition === 1 && !b.tryboot && b.booted === 'slot=a trial=0 version=1.0.0',
    'v1 on A after the cut write',
    b,
  );
  expect(b.outcomes.length === 0, 'nothing to settle after the cut write', b);
  expect(installed(b), 'v2 installed by RAUC, then a tryboot reboot', b);

  // 2. v2's trial: healthy → committed; it finds v3 at once
  await publish('3.0.0');
  b = await boot('v2 trial, finds v3');
  expect(
    b.partition === 2 && b.tryboot && b.booted === 'slot=b trial=1 version=2.0.0',
    'trial of v2 on B',
    b,
  );
  expect(
    b.outcomes.some((o) => o.kind === 'committed' && o.version === '2.0.0'),
    'v2 committed',
    b,
  );
  expect(installed(b), 'v3 installed by RAUC, then a tryboot reboot', b);

  // 3. v3 fails its health check → marked bad, a plain reboot → v2 (committed)
  b = await boot('v3 trial (unhealthy)');
  expect(
    b.partition === 1 && b.tryboot && b.booted === 'slot=a trial=1 version=3.0.0',
    'trial of v3 on A',
    b,
  );
  expect(
    b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '3.0.0'),
    'v3 rolled back',
    b,
  );
  expect(b.result.lines.includes('VT-OS-REBOOT tryboot=0'), 'a plain reboot', b);
  await publish('4.0.0');
  b = await boot('v2 after v3 (a plain boot), finds v4');
  expect(onV2(b), 'v2 boots after a plain reboot: committed', b);
  expect(installed(b), 'v4 installed by RAUC, then a tryboot reboot', b);

  // 4. v4 hangs at boot → the hardware watchdog resets the machine → v2
  b = await boot('v4 trial (hangs)');
  expect(b.partition === 1 && b.tryboot, 'trial of v4 on A', b);
  expect(b.result.lines.includes('VT-OS-HANG'), 'v4 hung', b);
  expect(
    b.result.outcome === 'exited' &&
      !rebooted(b) &&
      b.result.events.some((e) => e.startsWith('WATCHDOG') && e.includes('"reset"')),
    'reset by the watchdog',
    b,
  );
  await publish('5.0.0');
  b = await boot('v2 after the watchdog, finds v5');
  expect(onV2(b), 'v2 after the watchdog reset', b);
  expect(
    b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '4.0.0'),
    'v4 reported rolled back',
    b,
  );
  expect(installed(b), 'v5 installed by RAUC, then a tryboot reboot', b);

  // 5. power cut during v5's trial → v2
  b = await boot('v5 trial, power cut', 'VT-OS-BOOT slot=a trial=1');
  expect(
    b.partition === 1 && b.tryboot && b.result.outcome === 'killed',
    'cut in the trial of v5',
    b,
  );
  b = await boot('after the cut trial');
  expect(onV2(b), 'v2 after the cut trial', b);
  expect(
    b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '5.0.0'),
    'v5 reported rolled back',
    b,
  );
  expect(b.check?.kind === 'up-to-date', 'v5 is not retried', b);
  if (n !== BOOTS) throw new Error(`${String(n)} boots, planned ${String(BOOTS)}`);
  await mkdir(join(work, 'out'), { recursive: true });
  await writeFile(
    join(work, 'out', 'duration.txt'),
    `${String(secs(t0))} s for ${String(n)} boots\n`,
  );
  h.log(`done: ${String(n)} boots in ${String(secs(t0))} s`);
  return undefined;
};
export default scenario;
