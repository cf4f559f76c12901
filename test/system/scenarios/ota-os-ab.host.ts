// OS updates A/B in qemu, with the real RAUC 1.8 (`rauc service`, `rauc install` of signed
// verity bundles through device-mapper in the guest kernel), the project's bootloader backend,
// the hub's OS agent (bin/hub-os.ts) and a real TUF repository. The host plays the Raspberry
// Pi firmware between boots (test/system/lib/pi-firmware.ts): autoboot.txt and the one-shot
// tryboot flag on the card's boot FAT choose the boot partition, whose kernel and cmdline.txt
// boot. A reboot is a power-off; the hardware watchdog is qemu's i6300esb (reset = qemu exits).
//
//   v1 → v2 from the channel → trial boot → healthy → committed; a plain boot runs v2 again
//   v3 (health check fails) → back to v2 without a person
//   v4 (hangs at boot) → watchdog reset → v2, reported rolled back
//   power cut during the RAUC write of v5 → v2 boots; v5 again → power cut during its trial → v2
//
// What is emulated (docs/ota.md): the firmware (this file), the root filesystem (the guest's
// own Debian root with node and rauc; the booted slot's os-version and behaviour are read
// from the root partition its cmdline names) and the initramfs (the harness's).
// Opt-in: VIGIL_SYSTEM_SLOW=1 (ten boots under TCG take longer than the CI suite's budget).
// @timeout 2400
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeOsImage } from '../../../dev/fixtures/os-image.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { run, which } from '../../../hw/os/run.js';
import { buildRootfsBundle, makeDevSigningKey } from '../../../ota/rauc-bundle.js';
import { initRepo, release } from '../../../ota/repo.js';
import type { RepoContext } from '../../../ota/repo.js';
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

const BOOTS = 10;

const scenario: HostScenario = async (h) => {
  if (process.env.VIGIL_SYSTEM_SLOW !== '1')
    return {
      skip: 'opt-in (ten TCG boots, over the CI suite budget): VIGIL_SYSTEM_SLOW=1 --only ota-os-ab',
    };
  const missing: string[] = [];
  for (const tool of ['rauc', 'mcopy', 'mkfs.vfat', 'mke2fs', 'sfdisk'])
    if ((await which(tool)) === null) missing.push(tool);
  if (missing.length > 0) return { skip: `not installed on the host: ${missing.join(', ')}` };
  const stage2 = h.stage2;
  if (stage2 === undefined) throw new Error('the harness gave no project image');
  const work = h.workDir;
  const t0 = Date.now();

  // release side: signing key, TUF repository, one OS image per version
  const { cert, key } = await makeDevSigningKey(join(work, 'rauc-keys'));
  const ctx: RepoContext = {
    repoDir: join(work, 'repo'),
    keysDir: join(work, 'tuf-keys'),
    fs: new DurableFs(),
    scryptLogN: 12,
  };
  await initRepo(ctx);
  await copyFile(cert, join(ctx.repoDir, 'keyring.pem'));
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
  const publish = async (version: string, behaviour: Behaviour): Promise<void> => {
    const out = join(work, `vigil-os-${version}.raucb`);
    await buildRootfsBundle({
      image: await imageOf(version, behaviour),
      board: 'qemu-amd64',
      version,
      cert,
      key,
      out,
      workDir: `${out}.work`,
    });
    await release(ctx, { bundle: await readFile(out), channel: 'stable', version, kind: 'rootfs' });
    h.log(`released ${version} (${behaviour})`);
  };
  const repoDisk = join(work, 'repo.tar');
  h.log(`release side ready in ${String(Math.round((Date.now() - t0) / 1000))} s`);

  let n = 0;
  const boot = async (what: string, killAtLine?: string): Promise<Boot> => {
    n++;
    await run('tar', ['-c', '-f', repoDisk, '-C', ctx.repoDir, '.'], { timeoutMs: 120_000 });
    const fw = await playPiFirmware(card, work);
    const initrd = await stage2.initrd('_ota-os-ab.sh', 900, n, BOOTS);
    const tb = Date.now();
    const result = await h.boot({
      kernel: fw.kernel,
      initrd,
      append: `console=ttyS0 loglevel=4 panic=-1 no_timer_check random.trust_cpu=on ${fw.append}`,
      disks: [
        { file: h.guest.rootfs, serial: 'root', snapshot: true },
        { file: stage2.projectImage, serial: 'project', readonly: true },
        { file: card, serial: 'card' },
        { file: repoDisk, serial: 'repo', readonly: true },
      ],
      memoryMiB: 1536,
      timeoutMs: 1200_000,
      consoleLog: join(work, `boot-${String(n)}.console.log`),
      extraArgs: ['-device', 'i6300esb'],
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
      `boot ${String(n)} (${what}): partition ${String(fw.partition)}${fw.tryboot ? ' (tryboot)' : ''}, ${b.booted ?? 'no agent'}, ${result.outcome} in ${String(Math.round((Date.now() - tb) / 1000))} s; outcomes ${JSON.stringify(b.outcomes)}; check ${JSON.stringify(b.check)}`,
    );
    const failed = result.lines.find((l) => /VT-RESULT \S+ fail/.test(l));
    if (failed !== undefined) throw new Error(`boot ${String(n)} (${what}): ${failed}`);
    return b;
  };
  const expect = (cond: boolean, what: string, b: Boot): void => {
    if (!cond)
      throw new Error(
        `boot ${String(n)}: ${what} (partition ${String(b.partition)}, tryboot ${String(b.tryboot)}, booted ${String(b.booted)}, outcome ${b.result.outcome}, outcomes ${JSON.stringify(b.outcomes)}, check ${JSON.stringify(b.check)}; console ${b.result.consoleLog})`,
      );
  };
  const rebooted = (b: Boot) => b.result.lines.some((l) => l.startsWith('VT-OS-REBOOT'));
  // the agent's check() ends in the reboot: RAUC's success line, then the tryboot power-off
  const installed = (b: Boot) =>
    b.result.lines.some((l) => /installing `.*` succeeded/.test(l)) &&
    b.result.lines.includes('VT-OS-REBOOT tryboot=1');

  // 1. v1 → v2 through the channel → trial → healthy → committed
  await publish('2.0.0', 'healthy');
  let b = await boot('v1 finds v2');
  expect(
    b.partition === 1 && !b.tryboot && b.booted === 'slot=a trial=0 version=1.0.0',
    'v1 on A',
    b,
  );
  expect(installed(b), 'v2 installed by RAUC, then a tryboot reboot', b);
  b = await boot('v2 trial');
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
  await publish('3.0.0', 'unhealthy');
  b = await boot('v2 again, finds v3');
  expect(
    b.partition === 2 && !b.tryboot && b.booted === 'slot=b trial=0 version=2.0.0',
    'v2 boots after a plain reboot',
    b,
  );
  expect(installed(b), 'v3 installed by RAUC, then a tryboot reboot', b);

  // 2. v3 fails its health check → back to v2
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
  await publish('4.0.0', 'hang');
  b = await boot('v2 after v3, finds v4');
  expect(
    b.partition === 2 && !b.tryboot && b.booted === 'slot=b trial=0 version=2.0.0',
    'v2 back',
    b,
  );
  expect(installed(b), 'v4 installed by RAUC, then a tryboot reboot', b);

  // 3. v4 hangs at boot → the watchdog resets → v2
  b = await boot('v4 trial (hangs)');
  expect(b.partition === 1 && b.tryboot, 'trial of v4 on A', b);
  expect(b.result.lines.includes('VT-OS-HANG'), 'v4 hung', b);
  expect(b.result.outcome === 'exited' && !rebooted(b), 'reset by the watchdog', b);
  await publish('5.0.0', 'healthy');
  b = await boot('v2 after the watchdog; v5 install cut', 'writing data to device');
  expect(b.partition === 2 && !b.tryboot, 'v2 after the watchdog reset', b);
  expect(
    b.outcomes.some((o) => o.kind === 'rolled-back' && o.version === '4.0.0'),
    'v4 reported rolled back',
    b,
  );
  expect(b.result.outcome === 'killed', 'power cut during the RAUC write', b);

  // 4. power cuts: during the RAUC write (above), then during the trial
  b = await boot('after the cut write: v2, installs v5 again');
  expect(
    b.partition === 2 && !b.tryboot && b.booted === 'slot=b trial=0 version=2.0.0',
    'v2 after the cut write',
    b,
  );
  expect(installed(b), 'v5 installed by RAUC, then a tryboot reboot', b);
  b = await boot('v5 trial, power cut', 'VT-OS-BOOT slot=a trial=1');
  expect(
    b.partition === 1 && b.tryboot && b.result.outcome === 'killed',
    'cut in the trial of v5',
    b,
  );
  b = await boot('after the cut trial');
  expect(
    b.partition === 2 && !b.tryboot && b.booted === 'slot=b trial=0 version=2.0.0',
    'v2 after the cut trial',
    b,
  );
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
    `${String(Math.round((Date.now() - t0) / 1000))} s for ${String(n)} boots\n`,
  );
  h.log(`done: ${String(n)} boots in ${String(Math.round((Date.now() - t0) / 1000))} s`);
  return undefined;
};
export default scenario;
