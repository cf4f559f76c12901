/**
 * `vigil image build`: the whole recipe, stage by stage.
 *
 *   preflight  tools, root, binfmt_misc for foreign architectures
 *   app        compile Vigil, production node_modules, Node 20 runtime, native addons
 *   rootfs     mmdebstrap (Debian bookworm + kernel + firmware + runtime packages)
 *   addons     native addons compiled for the board against the new root filesystem
 *   configure  overlay files, Vigil into /opt/vigil, units enabled, locked root, manifest
 *   boot       boot partition contents (firmware, config.txt, cmdline.txt, kernel, initrd, DTBs)
 *   filesystems  FAT boot A/B + provisioning, ext4 root A (fixed times, UUIDs, seeds)
 *   assemble   partition table + filesystems into one sparse .img
 *   compress   .img.xz and SHA-256 sums
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  copyFile,
  cp,
  mkdir,
  readFile,
  readdir,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DurableFs } from '../hw/os/fs.js';
import { run, spawnProcess, which } from '../hw/os/run.js';
import { VigilError } from '../base/errors.js';
import { buildAddons, stageApp } from './app.js';
import type { Board, KernelSource } from './boards.js';
import { readTable } from './disk.js';
import type { Runner } from './disk.js';
import { assembleImage, makeExt4, makeFat } from './filesystems.js';
import { compareWithPlan, partitionOf, planLayout, sfdiskScript } from './layout.js';
import type { Layout } from './layout.js';
import { RAUC_PATHS } from '../protocol/rauc-system.js';
import { HUB_UNIT, IMAGE_PATHS, bootOverlay, rootOverlay, unitsToEnable } from './overlay.js';
import type { OverlayFile } from './overlay.js';
import {
  ensureBinfmt,
  mmdebstrapArgs,
  packagesFor,
  parseDpkgStatus,
  unmountUnder,
} from './rootfs.js';
import { StageRunner } from './stages.js';
import { disableUnits, enableUnits } from './enable.js';
import { imagerRepository } from './imager.js';

export class BuildError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EIMAGEBUILD', message, options);
    this.name = 'BuildError';
  }
}

export interface BuildOptions {
  readonly board: Board;
  readonly outDir: string;
  readonly kernelSource: KernelSource;
  readonly sourceDateEpoch: number;
  readonly mirror?: string;
  readonly rpiKeyring?: string;
  /** PEM keyring for OS update bundles (/etc/rauc/keyring.pem); none: RAUC refuses every bundle. */
  readonly raucKeyring?: string;
  /** The OS version written to /etc/vigil/os-version (default: the app's package.json version). */
  readonly osVersion?: string;
  /** image/.cache by default: apt downloads, node runtime, work directories. */
  readonly cacheDir?: string;
  readonly compress?: boolean;
  readonly print: (line: string) => void;
  readonly repo?: string;
  /** Git commit to build (default HEAD); `reproduce` pins one for both builds. */
  readonly commit?: string;
}

export interface BuildResult {
  readonly image: string;
  readonly xz: string | undefined;
  readonly sha256: string;
  readonly manifest: string;
  readonly kernelVersion: string;
  readonly layout: Layout;
  readonly seconds: number;
  readonly sfdiskDump: string;
  /** The git commit whose sources are in the image (undefined outside git). */
  readonly commit: string | undefined;
}

/** The repository root (holds tsconfig.build.json), from this module's location in src or dist. */
export async function findRepo(from = dirname(fileURLToPath(import.meta.url))): Promise<string> {
  let dir = from;
  for (;;) {
    try {
      await stat(join(dir, 'tsconfig.build.json'));
      await stat(join(dir, 'image'));
      return dir;
    } catch {
      const up = dirname(dir);
      if (up === dir)
        throw new BuildError(
          'cannot find the Vigil source tree (tsconfig.build.json) above ' + from,
        );
      dir = up;
    }
  }
}

export const REQUIRED_TOOLS = [
  'mmdebstrap',
  'sfdisk',
  'mkfs.vfat',
  'mcopy',
  'mkfs.ext4',
  'debugfs',
  'e2fsck',
  'xz',
  'dd',
  'truncate',
  'tar',
  'npm',
] as const;

const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  mmdebstrap: 'mmdebstrap',
  sfdisk: 'fdisk',
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  xz: 'xz-utils',
};

export async function missingTools(tools: readonly string[] = REQUIRED_TOOLS): Promise<string[]> {
  const missing: string[] = [];
  for (const t of tools) if ((await which(t)) === null) missing.push(t);
  return missing;
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }))
    h.update(chunk as Buffer);
  return h.digest('hex');
}

async function writeOverlay(root: string, files: readonly OverlayFile[]): Promise<void> {
  for (const f of files) {
    const p = join(root, f.path);
    await mkdir(dirname(p), { recursive: true });
    await rm(p, { force: true });
    await writeFile(p, f.content);
    await chmod(p, f.mode);
  }
}

/** /etc/fake-hwclock.data for a time (UTC, "YYYY-MM-DD HH:MM:SS"). */
export function fakeHwclockData(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace('T', ' ').slice(0, 19) + '\n';
}

/** Lock every account that has an empty password (mmdebstrap leaves root as "*" already). */
export function lockPasswords(shadow: string): { text: string; unlocked: string[] } {
  const unlocked: string[] = [];
  const text = shadow
    .split('\n')
    .map((line) => {
      if (line === '') return line;
      const f = line.split(':');
      if (f[1] === '' || f[1] === undefined) {
        unlocked.push(f[0] ?? '?');
        f[1] = '*';
      }
      return f.join(':');
    })
    .join('\n');
  return { text, unlocked };
}

/** Run mmdebstrap with its output in a log file (it is long); the tail goes into the error. */
async function runLogged(
  cmd: string,
  args: readonly string[],
  logFile: string,
  env: Record<string, string | undefined>,
): Promise<void> {
  const { open } = await import('node:fs/promises');
  const fh = await open(logFile, 'w');
  try {
    const p = spawnProcess(cmd, args, { env, stdout: 'pipe', stderr: 'pipe' });
    const tail: string[] = [];
    const onData = (d: Buffer): void => {
      void fh.write(d);
      tail.push(...d.toString('utf8').split('\n').filter(Boolean));
      if (tail.length > 40) tail.splice(0, tail.length - 40);
    };
    p.child.stdout?.on('data', onData);
    p.child.stderr?.on('data', onData);
    const { exitCode, signal } = await p.exited;
    if (exitCode !== 0) {
      throw new BuildError(
        `${cmd} exited with ${exitCode === null ? `signal ${String(signal)}` : `code ${exitCode}`} (log: ${logFile}): ${tail.slice(-6).join(' | ')}`,
      );
    }
  } finally {
    await fh.close();
  }
}

/** The Raspberry Pi device trees among a kernel's broadcom/ DTBs (bcm2711-rpi-4-b, bcm2837-rpi-3-b, ...). */
export function piDeviceTrees(files: readonly string[]): string[] {
  return files.filter((f) => /^bcm2\d{3}-rpi-[a-z0-9-]+\.dtb$/.test(f)).sort();
}

function kernelVersionOf(modulesDirs: readonly string[]): string {
  if (modulesDirs.length !== 1) {
    throw new BuildError(
      `expected exactly one kernel in the root filesystem, found: ${modulesDirs.join(', ') || 'none'}`,
    );
  }
  return modulesDirs[0] ?? '';
}

/** Cache key of the root filesystem stage: everything mmdebstrap's result depends on. */
export function rootfsKey(
  o: Pick<BuildOptions, 'board' | 'kernelSource' | 'mirror' | 'rpiKeyring'>,
): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        o.board.arch,
        packagesFor(o.board, o.kernelSource),
        o.mirror ?? '',
        o.kernelSource,
        mmdebstrapArgs({
          board: o.board,
          target: '',
          kernelSource: o.kernelSource,
          ...(o.rpiKeyring !== undefined ? { rpiKeyring: o.rpiKeyring } : {}),
        }),
      ]),
    )
    .digest('hex')
    .slice(0, 16);
}

/** The version in an app tree's package.json (0.0.0 when it has none). */
async function packageVersion(appDir: string): Promise<string> {
  const pkg = JSON.parse(await readFile(join(appDir, 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

export async function buildImage(o: BuildOptions): Promise<BuildResult> {
  const runner: Runner = run;
  const repo = o.repo ?? (await findRepo());
  const cache = resolve(o.cacheDir ?? join(repo, 'image', '.cache'));
  const out = resolve(o.outDir);
  const board = o.board;
  const work = join(cache, 'work', board.name);
  const rootfs = join(work, 'rootfs');
  const bootDir = join(work, 'boot-a');
  const name = `vigil-${board.name}`;
  const image = join(out, `${name}.img`);
  const layout = planLayout(board.sizes);
  const epoch = o.sourceDateEpoch;
  const env = {
    ...process.env,
    SOURCE_DATE_EPOCH: String(epoch),
    LC_ALL: 'C.UTF-8',
    TZ: 'UTC',
  };
  const dfs = new DurableFs();
  const stages = new StageRunner({ print: o.print, total: o.compress === false ? 8 : 9 });
  let kernelVersion = '';

  o.print(
    `vigil image build: board ${board.name} (${board.summary}), kernel source ${o.kernelSource}, SOURCE_DATE_EPOCH=${epoch}`,
  );

  await stages.stage('preflight', 'tools, privileges, binfmt_misc', async () => {
    const missing = await missingTools();
    if (missing.length > 0) {
      const pkgs = [...new Set(missing.map((t) => TOOL_PACKAGES[t] ?? t))];
      throw new BuildError(
        `missing tools: ${missing.join(', ')} (apt-get install ${pkgs.join(' ')})`,
      );
    }
    if (process.getuid?.() !== 0)
      throw new BuildError('the image build must run as root (mmdebstrap --mode=root, chroot)');
    const how = await ensureBinfmt(board.arch, runner);
    o.print(
      `    ${board.arch} binaries: ${how === 'native' ? 'native' : `qemu-user via binfmt_misc (${how})`}`,
    );
    await mkdir(out, { recursive: true });
    await mkdir(work, { recursive: true });
  });

  const app = await stages.stage(
    'app',
    'compile Vigil, production node_modules, Node runtime',
    async () => {
      const staged = await stageApp({
        repo,
        board,
        workDir: work,
        cacheDir: cache,
        log: o.print,
        runner,
        ...(o.commit !== undefined ? { commit: o.commit } : {}),
      });
      for (const w of staged.warnings) o.print(`    warning: ${w}`);
      return staged;
    },
  );

  await stages.stage(
    'rootfs',
    `mmdebstrap ${board.arch} bookworm${board.arch === 'arm64' ? ' (emulated; 15-25 min)' : ''}`,
    async () => {
      const key = rootfsKey(o);
      const stamp = join(work, 'rootfs.stamp');
      if (
        process.env.VIGIL_IMAGE_REUSE_ROOTFS === '1' &&
        (await readFile(stamp, 'utf8').catch(() => '')) === key
      ) {
        // development only: skips the long stage; the result is not a clean build
        o.print(
          '    VIGIL_IMAGE_REUSE_ROOTFS=1: reusing the previous root filesystem (not a clean build)',
        );
        return;
      }
      await rm(stamp, { force: true });
      const stale = await unmountUnder(rootfs, runner);
      if (stale.length > 0)
        o.print(`    unmounted leftovers of an interrupted build: ${stale.join(', ')}`);
      await rm(rootfs, { recursive: true, force: true });
      const aptCache = join(cache, 'apt', `${board.arch}-${key}`);
      await mkdir(aptCache, { recursive: true });
      const args = mmdebstrapArgs({
        board,
        target: rootfs,
        kernelSource: o.kernelSource,
        aptCache,
        ...(o.mirror !== undefined ? { mirror: o.mirror } : {}),
        ...(o.rpiKeyring !== undefined ? { rpiKeyring: o.rpiKeyring } : {}),
      });
      try {
        await runLogged('mmdebstrap', args, join(out, `${name}.mmdebstrap.log`), {
          ...env,
          TMPDIR: work,
        });
      } finally {
        // mmdebstrap unmounts on success and on its own errors; not when it is killed
        await unmountUnder(rootfs, runner);
      }
      await writeFile(stamp, key);
    },
  );

  const addons = await stages.stage(
    'addons',
    `native addons for ${board.arch} against the image's libraries`,
    async () =>
      buildAddons({
        board,
        appDir: app.appDir,
        nodeDir: app.nodeDir,
        sysroot: rootfs,
        log: o.print,
        runner,
      }),
  );

  const manifestFile = join(out, `${name}.manifest`);
  await stages.stage(
    'configure',
    'overlay, Vigil in /opt/vigil, units, accounts, manifest',
    async () => {
      kernelVersion = kernelVersionOf((await readdir(join(rootfs, 'lib', 'modules'))).sort());
      const osVersion = o.osVersion ?? (await packageVersion(app.appDir));
      o.print(`    OS version ${osVersion} (/etc/vigil/os-version)`);
      await writeOverlay(rootfs, rootOverlay(board, layout, osVersion));
      if (o.raucKeyring !== undefined) {
        await copyFile(o.raucKeyring, join(rootfs, RAUC_PATHS.keyring));
        await chmod(join(rootfs, RAUC_PATHS.keyring), 0o644);
      } else o.print('    no --rauc-keyring: this image refuses every OS update bundle');
      // the supervisor's unit, owned by firmware/supervisor
      const hubUnit = join(app.srcDir, 'firmware', 'supervisor', HUB_UNIT);
      try {
        await copyFile(hubUnit, join(rootfs, 'etc/systemd/system', HUB_UNIT));
      } catch (e) {
        throw new BuildError(`the hub's systemd unit ${hubUnit} is missing`, { cause: e });
      }
      // Vigil itself
      const appRoot = join(rootfs, IMAGE_PATHS.app);
      await rm(appRoot, { recursive: true, force: true });
      await cp(app.appDir, appRoot, { recursive: true, verbatimSymlinks: true });
      await mkdir(dirname(join(rootfs, IMAGE_PATHS.node)), { recursive: true });
      await copyFile(app.nodeBinary, join(rootfs, IMAGE_PATHS.node));
      await chmod(join(rootfs, IMAGE_PATHS.node), 0o755);
      await mkdir(join(rootfs, IMAGE_PATHS.app, 'docs'), { recursive: true });
      await copyFile(
        join(app.srcDir, 'docs', 'image.md'),
        join(rootfs, IMAGE_PATHS.app, 'docs', 'image.md'),
      ).catch(() => undefined);
      await rm(join(rootfs, 'usr/local/bin/node'), { force: true });
      await mkdir(join(rootfs, 'usr/local/bin'), { recursive: true });
      await symlink(IMAGE_PATHS.node, join(rootfs, 'usr/local/bin/node'));
      await mkdir(join(rootfs, IMAGE_PATHS.provisioning), { recursive: true });
      await chmod(join(rootfs, IMAGE_PATHS.provisioning), 0o700);
      await mkdir(join(rootfs, 'var/lib/vigil'), { recursive: true });
      await chmod(join(rootfs, 'var/lib/vigil'), 0o700);
      // units: enabled offline by the image's own symlinks (image/enable.ts: the host's
      // systemctl failed this with ECHRNG under load); the hub runs its own
      // hostapd/wpa_supplicant, so the packaged services stay off
      const enabled = await enableUnits(rootfs, unitsToEnable(board));
      o.print(
        `    enabled: ${enabled.map((l) => basename(dirname(l)) + '/' + basename(l)).join(', ')}`,
      );
      const disabled = await disableUnits(rootfs, ['hostapd.service', 'wpa_supplicant.service']);
      if (disabled.length > 0) o.print(`    disabled: ${disabled.join(', ')}`);
      // no password anywhere; SSH is not installed at all
      const shadowPath = join(rootfs, 'etc', 'shadow');
      const locked = lockPasswords(await readFile(shadowPath, 'utf8'));
      if (locked.unlocked.length > 0)
        o.print(`    locked accounts with empty passwords: ${locked.unlocked.join(', ')}`);
      await writeFile(shadowPath, locked.text);
      // volatile files that differ from build to build
      for (const p of [
        'var/cache/fontconfig',
        'var/cache/debconf/config.dat-old',
        'var/cache/debconf/templates.dat-old',
        'var/lib/dpkg/status-old',
        'var/lib/dpkg/diversions-old',
        'var/lib/systemd/catalog/database',
        // its time comes from the apt cache's state (fresh vs synced in), not from the inputs
        'var/cache/apt/archives/partial',
        'var/lib/dbus/machine-id',
        'etc/ssh',
        'etc/shadow-',
        'etc/gshadow-',
        'etc/passwd-',
        'etc/group-',
        'etc/subuid-',
        'etc/subgid-',
      ]) {
        await rm(join(rootfs, p), { recursive: true, force: true });
      }
      await mkdir(join(rootfs, 'var/cache/fontconfig'), { recursive: true });
      // fake-hwclock's postinst saved the build's wall clock; the device's clock starts at the
      // image's SOURCE_DATE_EPOCH instead (no earlier than the sources it runs)
      await writeFile(join(rootfs, 'etc/fake-hwclock.data'), fakeHwclockData(epoch));
      for (const d of ['var/log', 'tmp', 'var/tmp']) {
        for (const e of await readdir(join(rootfs, d)).catch(() => [] as string[])) {
          await rm(join(rootfs, d, e), { recursive: true, force: true });
        }
      }
      const pkgs = parseDpkgStatus(await readFile(join(rootfs, 'var/lib/dpkg/status'), 'utf8'));
      const lock = JSON.parse(await readFile(join(app.appDir, 'package-lock.json'), 'utf8')) as {
        packages?: Record<string, { version?: string; dev?: boolean }>;
      };
      const npmPkgs = Object.entries(lock.packages ?? {})
        .filter(([k, v]) => k.startsWith('node_modules/') && v.dev !== true)
        .map(([k, v]) => `npm ${k.slice('node_modules/'.length)} ${v.version ?? '?'}`)
        .sort();
      const manifest = [
        `# vigil image manifest: board ${board.name}, SOURCE_DATE_EPOCH ${epoch}, kernel ${kernelVersion}`,
        `runtime ${board.node.npmPackage} ${board.node.version} ${board.node.integrity}`,
        ...pkgs.map((p) => `deb ${p.name} ${p.version} ${p.arch}`),
        ...npmPkgs,
        '',
      ].join('\n');
      await dfs.writeFileAtomic(manifestFile, manifest, 'manifest');
      await copyFile(manifestFile, join(rootfs, 'etc/vigil/image-manifest'));
      o.print(
        `    kernel ${kernelVersion}; ${pkgs.length} Debian packages, ${npmPkgs.length} npm packages, native addons: ${addons.join(', ') || 'none'}`,
      );
    },
  );

  await stages.stage('boot', 'boot partition contents', async () => {
    await rm(bootDir, { recursive: true, force: true });
    await mkdir(bootDir, { recursive: true });
    const kv = kernelVersion;
    await copyFile(
      join(rootfs, 'boot', `${board.kernelPrefix}-${kv}`),
      join(bootDir, `${board.kernelPrefix}-${kv}`),
    );
    await copyFile(join(rootfs, 'boot', `initrd.img-${kv}`), join(bootDir, `initrd.img-${kv}`));
    if (board.piFirmware) {
      const fw = join(rootfs, 'usr', 'lib', 'raspi-firmware');
      for (const f of (await readdir(fw)).sort())
        await cp(join(fw, f), join(bootDir, f), { recursive: true });
      const dtbRoot = join(rootfs, 'usr', 'lib', `linux-image-${kv}`, 'broadcom');
      const dtbs = piDeviceTrees(await readdir(dtbRoot));
      for (const f of dtbs) await copyFile(join(dtbRoot, f), join(bootDir, f));
      const missing = board.requiredDtbs.filter((d) => !dtbs.includes(basename(d)));
      if (missing.length > 0)
        throw new BuildError(
          `kernel ${kv} lacks device trees for supported boards: ${missing.join(', ')}`,
        );
      o.print(`    ${dtbs.length} device trees, firmware from raspi-firmware`);
    }
    await writeOverlay(bootDir, bootOverlay(board, layout, kv));
    // the firmware partition is mounted over /boot/firmware: the root keeps an empty mountpoint
    const fwMount = join(rootfs, IMAGE_PATHS.firmware);
    await rm(fwMount, { recursive: true, force: true });
    await mkdir(fwMount, { recursive: true });
  });

  const fsDir = join(work, 'fs');
  await stages.stage('filesystems', 'FAT boot A/B and provisioning, ext4 root A', async () => {
    await rm(fsDir, { recursive: true, force: true });
    await mkdir(fsDir, { recursive: true });
    const bootA = partitionOf(layout, 'boot-a');
    const bootB = partitionOf(layout, 'boot-b');
    const prov = partitionOf(layout, 'provisioning');
    const rootA = partitionOf(layout, 'root-a');
    await makeFat({
      output: join(fsDir, 'boot-a.vfat'),
      sizeMiB: bootA.sizeMiB,
      label: bootA.label ?? '',
      epoch,
      sourceDir: bootDir,
      fatBits: 32,
      runner,
    });
    await makeFat({
      output: join(fsDir, 'boot-b.vfat'),
      sizeMiB: bootB.sizeMiB,
      label: bootB.label ?? '',
      epoch,
      fatBits: 32,
      runner,
    });
    await makeFat({
      output: join(fsDir, 'provisioning.vfat'),
      sizeMiB: prov.sizeMiB,
      label: prov.label ?? '',
      epoch,
      fatBits: 16,
      runner,
    });
    await makeExt4({
      sourceDir: rootfs,
      output: join(fsDir, 'root-a.ext4'),
      sizeMiB: rootA.sizeMiB,
      label: rootA.label ?? '',
      epoch,
      runner,
    });
  });

  let sfdiskDump = '';
  await stages.stage('assemble', 'partition table and filesystems into the image', async () => {
    await assembleImage(
      image,
      layout,
      sfdiskScript(layout),
      [
        { number: partitionOf(layout, 'boot-a').number, file: join(fsDir, 'boot-a.vfat') },
        { number: partitionOf(layout, 'boot-b').number, file: join(fsDir, 'boot-b.vfat') },
        {
          number: partitionOf(layout, 'provisioning').number,
          file: join(fsDir, 'provisioning.vfat'),
        },
        { number: partitionOf(layout, 'root-a').number, file: join(fsDir, 'root-a.ext4') },
      ],
      runner,
    );
    const problems = compareWithPlan(layout, (await readTable(image, runner)).partitions);
    if (problems.length > 0)
      throw new BuildError(`partition table does not match the plan: ${problems.join('; ')}`);
    sfdiskDump = (await runner('sfdisk', ['-d', image], { timeoutMs: 30_000 })).stdout.toString(
      'utf8',
    );
    await rm(fsDir, { recursive: true, force: true });
  });

  let xzFile: string | undefined;
  const sums: string[] = [];
  if (o.compress !== false) {
    await stages.stage('compress', 'xz and SHA-256', async () => {
      xzFile = `${image}.xz`;
      await rm(xzFile, { force: true });
      // fixed thread count and block size: the .xz is as reproducible as the .img
      await runner('xz', ['-k', '-f', '-6', '-T2', '--block-size=64MiB', image], {
        timeoutMs: 60 * 60_000,
      });
    });
  }
  const imgHash = await sha256File(image);
  sums.push(`${imgHash}  ${basename(image)}`);
  const xzHash = xzFile !== undefined ? await sha256File(xzFile) : undefined;
  if (xzFile !== undefined) sums.push(`${xzHash ?? ''}  ${basename(xzFile)}`);
  const sumFile = `${image}.sha256`;
  await dfs.writeFileAtomic(sumFile, sums.join('\n') + '\n', 'sha256');
  // Raspberry Pi Imager repository JSON beside the download (image/imager.ts)
  let imagerFile: string | undefined;
  if (xzFile !== undefined && xzHash !== undefined) {
    imagerFile = join(out, `${name}.rpi-imager.json`);
    const repoJson = imagerRepository({
      board: board.name,
      version: await packageVersion(app.appDir),
      sourceDateEpoch: epoch,
      url: basename(xzFile),
      extractSize: (await stat(image)).size,
      extractSha256: imgHash,
      downloadSize: (await stat(xzFile)).size,
      downloadSha256: xzHash,
    });
    await dfs.writeFileAtomic(imagerFile, JSON.stringify(repoJson, null, 2) + '\n', 'imager-json');
  }
  const seconds = stages.elapsed();
  await dfs.writeFileAtomic(
    join(out, `${name}.build.json`),
    JSON.stringify(
      {
        board: board.name,
        kernelSource: o.kernelSource,
        kernelVersion,
        commit: app.commit ?? null,
        sourceDateEpoch: epoch,
        node: board.node,
        layout,
        sha256: imgHash,
        stages: stages.timings,
        seconds: Math.round(seconds),
      },
      null,
      2,
    ) + '\n',
    'build-info',
  );
  o.print('');
  o.print(sfdiskDump.trimEnd());
  o.print('');
  o.print(`image     ${image} (${layout.totalMiB} MiB)`);
  if (xzFile !== undefined) o.print(`xz        ${xzFile}`);
  if (imagerFile !== undefined) o.print(`imager    ${imagerFile}`);
  o.print(`sha256    ${imgHash}`);
  o.print(`manifest  ${manifestFile}`);
  o.print(`built in  ${stages.summary()}`);
  return {
    image,
    xz: xzFile,
    sha256: imgHash,
    manifest: manifestFile,
    kernelVersion,
    layout,
    seconds,
    sfdiskDump,
    commit: app.commit,
  };
}
