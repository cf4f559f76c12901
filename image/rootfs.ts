/**
 * The root filesystem: mmdebstrap's command line (pure, tested), binfmt_misc
 * setup for foreign architectures, and the package manifest read from dpkg's
 * status file.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { pathExists } from '../hw/os/fs.js';
import { run } from '../hw/os/run.js';
import { VigilError } from '../base/errors.js';
import type { Board, KernelSource } from './boards.js';
import {
  DEFAULT_MIRROR,
  DEFAULT_SECURITY_MIRROR,
  RPI_ARCHIVE,
  RUNTIME_PACKAGES,
  SUITE,
} from './boards.js';
import type { Runner } from './disk.js';

export class BinfmtError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EBINFMT', message, options);
    this.name = 'BinfmtError';
  }
}

export interface RootfsOptions {
  readonly board: Board;
  readonly target: string;
  readonly mirror?: string;
  readonly securityMirror?: string;
  readonly kernelSource: KernelSource;
  /** Keyring for Raspberry Pi's archive (kernelSource "raspberrypi"). */
  readonly rpiKeyring?: string;
  /** Directory holding downloaded .deb files kept between builds. */
  readonly aptCache?: string;
}

/** Debian architecture of this machine. */
export function hostArch(): string {
  if (process.arch === 'x64') return 'amd64';
  return process.arch;
}

export function packagesFor(board: Board, kernelSource: KernelSource): string[] {
  let pkgs = [...RUNTIME_PACKAGES, ...board.packages];
  if (kernelSource === 'raspberrypi') {
    // Raspberry Pi's kernel (bcm2835-codec M2M H.264 encoder, unicam, /dev/vcio), its
    // firmware build, and raspi-utils for vcmailbox (the customer-OTP key source)
    pkgs = pkgs.filter((p) => p !== 'linux-image-arm64' && p !== 'raspi-firmware');
    pkgs.push('linux-image-rpi-v8', 'raspi-firmware', 'raspi-utils');
  }
  return [...new Set(pkgs)].sort();
}

const MODULE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/**
 * Hooks that make the initramfs carry only `modules` (MODULES=list plus
 * /etc/initramfs-tools/modules); none for an empty list (Debian's MODULES=most).
 */
export function initramfsHooks(modules: readonly string[]): string[] {
  if (modules.length === 0) return [];
  const bad = modules.find((m) => !MODULE_NAME.test(m));
  if (bad !== undefined) throw new VigilError('EBOARD', `invalid kernel module name "${bad}"`);
  return [
    '--customize-hook=printf "MODULES=list\\n" > "$1/etc/initramfs-tools/conf.d/vigil-modules.conf"',
    `--customize-hook=printf "%s\\n" ${modules.join(' ')} >> "$1/etc/initramfs-tools/modules"`,
  ];
}

/**
 * Files dpkg never unpacks (`path-exclude`): the GPU side of ffmpeg's dependency tree, which
 * a headless camera loads only to render with OpenGL or Intel Quick Sync, never to record:
 * mesa's DRI drivers (libGL dlopens them for a GL context), the LLVM and Z3 libraries only
 * those drivers link, and Intel's Media SDK runtime (libmfx's dispatcher dlopens it). About
 * 190 MiB of the 1.3 GiB root, so of every OS update (docs/decisions.md, "A headless root").
 * test/image/ci-image.ts checks the built twin: none of them there, its ffmpeg still encodes.
 */
export const HEADLESS_EXCLUDES: readonly string[] = [
  '/usr/lib/*/dri/*',
  '/usr/lib/*/libLLVM-*',
  '/usr/lib/*/libz3.so*',
  '/usr/lib/*/libmfxhw64.so*',
  '/usr/lib/*/mfx/*',
];

/** The argv for mmdebstrap (hooks are mmdebstrap's own mini-language, not ours). */
export function mmdebstrapArgs(o: RootfsOptions): string[] {
  const mirror = o.mirror ?? DEFAULT_MIRROR;
  const security = o.securityMirror ?? DEFAULT_SECURITY_MIRROR;
  const comps = o.board.components.join(' ');
  const args = [
    '--mode=root',
    '--variant=apt',
    `--arch=${o.board.arch}`,
    '--format=directory',
    `--include=${packagesFor(o.board, o.kernelSource).join(',')}`,
    '--aptopt=Apt::Install-Recommends "false"',
    '--aptopt=Acquire::Retries "3"',
    // documentation is not needed on a camera; keep the copyright files
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/info/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    ...HEADLESS_EXCLUDES.map((p) => `--dpkgopt=path-exclude=${p}`),
    // mkinitramfs is slow under emulation: divert it while packages install, run it once at the end
    '--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs',
    '--essential-hook=printf "#!/bin/sh\\nexit 0\\n" > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"',
    '--customize-hook=rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs',
    ...initramfsHooks(o.board.initramfsModules),
    '--customize-hook=chroot "$1" update-initramfs -c -k all',
  ];
  if (o.aptCache !== undefined) {
    args.push(
      '--skip=essential/unlink',
      '--setup-hook=mkdir -p "$1/var/cache/apt/archives/"',
      `--setup-hook=sync-in ${o.aptCache} /var/cache/apt/archives/`,
      `--customize-hook=sync-out /var/cache/apt/archives ${o.aptCache}`,
    );
  }
  if (o.kernelSource === 'raspberrypi') {
    if (o.rpiKeyring === undefined)
      throw new VigilError('ERPIKEYRING', 'kernel source "raspberrypi" needs --rpi-keyring FILE');
    args.push(`--keyring=${o.rpiKeyring}`);
  }
  args.push(SUITE, o.target);
  args.push(`deb ${mirror} ${SUITE} ${comps}`);
  args.push(`deb ${mirror} ${SUITE}-updates ${comps}`);
  args.push(`deb ${security} ${SUITE}-security ${comps}`);
  if (o.kernelSource === 'raspberrypi')
    args.push(`deb [signed-by=${o.rpiKeyring ?? ''}] ${RPI_ARCHIVE} ${SUITE} main`);
  return args;
}

const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';
const QEMU_NAMES: Readonly<Record<string, string>> = { arm64: 'aarch64', amd64: 'x86_64' };

/**
 * Make foreign binaries of `arch` runnable (qemu-user-static through
 * binfmt_misc), or explain exactly why that is impossible here.
 */
export async function ensureBinfmt(
  arch: string,
  runner: Runner = run,
  dir = BINFMT_DIR,
  confDir = '/usr/lib/binfmt.d',
): Promise<'native' | 'registered' | 'already'> {
  if (arch === hostArch()) return 'native';
  const qemu = QEMU_NAMES[arch];
  if (qemu === undefined)
    throw new BinfmtError(`no qemu-user emulation known for architecture ${arch}`);
  const conf = `${confDir}/qemu-${qemu}.conf`;
  if (!(await pathExists(conf))) {
    throw new BinfmtError(
      `building for ${arch} on ${hostArch()} needs qemu-user emulation: ${conf} is missing (apt-get install qemu-user-static)`,
    );
  }
  if (!(await pathExists(`${dir}/register`))) {
    try {
      await runner('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir], { timeoutMs: 10_000 });
    } catch (e) {
      throw new BinfmtError(
        `binfmt_misc is not mounted at ${dir} and mounting it failed (needs root and a kernel with CONFIG_BINFMT_MISC; inside a container start it with binfmt_misc available): cannot run ${arch} binaries`,
        { cause: e },
      );
    }
  }
  const entry = `${dir}/qemu-${qemu}`;
  if (await pathExists(entry)) {
    const state = await readFile(entry, 'utf8');
    if (!state.startsWith('enabled')) {
      throw new BinfmtError(
        `binfmt_misc entry ${entry} exists but is disabled (echo 1 > ${entry})`,
      );
    }
    return 'already';
  }
  const line = (await readFile(conf, 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw new BinfmtError(`${conf} holds no binfmt registration`);
  try {
    await writeFile(`${dir}/register`, line);
  } catch (e) {
    throw new BinfmtError(
      `registering qemu-${qemu} with binfmt_misc failed (needs root): ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  return 'registered';
}

export interface ManifestEntry {
  readonly name: string;
  readonly version: string;
  readonly arch: string;
}

/** Installed packages from a dpkg status file, sorted by name. */
export function parseDpkgStatus(text: string): ManifestEntry[] {
  const out: ManifestEntry[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (k: string): string | undefined =>
      new RegExp(`^${k}: (.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const name = field('Package');
    const version = field('Version');
    const status = field('Status');
    const arch = field('Architecture');
    if (name && version && arch && status?.endsWith(' installed'))
      out.push({ name, version, arch });
  }
  return out.sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : a.arch < b.arch ? -1 : 1,
  );
}

/** Mount points at or below `dir` in a /proc/self/mountinfo text, deepest first. */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const base = dir.replace(/\/+$/, '');
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_m, o: string) =>
      String.fromCharCode(parseInt(o, 8)),
    );
    if (mp === base || mp.startsWith(base + '/')) out.push(mp);
  }
  return [...new Set(out)].sort(
    (a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1),
  );
}

/**
 * Unmount whatever an interrupted mmdebstrap left mounted in the root filesystem
 * (proc, sys, dev in root mode): a killed build must not leave the host's /proc
 * inside the project tree for the next build's `rm -rf`, or for tools that walk it.
 */
export async function unmountUnder(
  dir: string,
  runner: Runner = run,
  mountinfo = '/proc/self/mountinfo',
): Promise<string[]> {
  const mps = mountsUnder(await readFile(mountinfo, 'utf8').catch(() => ''), dir);
  for (const mp of mps)
    await runner('umount', ['--lazy', mp], { timeoutMs: 30_000, okExitCodes: [0, 32] });
  return mps;
}
