/**
 * The cached guest: built once by builder/build-guest.sh into .cache/guest-<key>/, where the
 * key hashes every input (kernel package + version, guest packages, node version, builder
 * scripts). A changed input builds a new guest; older ones are removed after a good build.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { run, spawnProcess } from '../../../hw/os/run.js';
import { VigilError } from '../../../base/errors.js';
import type { GuestImage } from './types.js';

/** Debian packages in the guest's root filesystem (node comes from the host). */
export const GUEST_PACKAGES = [
  'kmod',
  'busybox',
  'bash',
  'coreutils',
  'mount',
  'util-linux',
  'procps',
  'psmisc',
  'iproute2',
  'iw',
  'wireless-regdb',
  'cryptsetup-bin',
  'dmsetup',
  'hostapd',
  'wpasupplicant',
  'dnsmasq-base',
  'v4l-utils',
  'ffmpeg',
  'gpiod',
  'e2fsprogs',
  'dosfstools',
  'mtools',
  'fdisk',
  'netcat-openbsd',
  'socat',
  'curl',
  'iputils-ping',
  'openssl',
  'ca-certificates',
  'xxd',
  'tar',
  'gzip',
  'xz-utils',
  // OS updates (ota-os-*): RAUC 1.8 and a private D-Bus for its service
  'rauc',
  'dbus-daemon',
  'dbus-bin',
  'libglib2.0-bin',
] as const;

/** Bump when the guest layout changes in a way the hashed scripts do not show. */
const LAYOUT_VERSION = 1;

export class GuestBuildError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EGUESTBUILD', message, options);
    this.name = 'GuestBuildError';
  }
}

interface KernelPick {
  readonly pkg: string;
  readonly version: string;
}

/** linux-image-amd64 -> linux-image-6.1.0-NN-amd64 and its candidate version, via apt-cache. */
export async function resolveKernel(): Promise<KernelPick> {
  const deps = (
    await run('apt-cache', ['depends', 'linux-image-amd64'], { timeoutMs: 30_000 })
  ).stdout.toString();
  const pkg = /Depends: (linux-image-\d[^\s]*-amd64)/.exec(deps)?.[1];
  if (pkg === undefined)
    throw new GuestBuildError(
      'apt-cache: linux-image-amd64 has no kernel dependency (apt-get update?)',
    );
  const policy = (await run('apt-cache', ['policy', pkg], { timeoutMs: 30_000 })).stdout.toString();
  const version = /Candidate: (\S+)/.exec(policy)?.[1];
  if (version === undefined || version === '(none)')
    throw new GuestBuildError(`apt-cache: no candidate for ${pkg}`);
  return { pkg, version };
}

export interface GuestBuildOptions {
  /** test/system directory. */
  readonly systemDir: string;
  readonly cacheDir: string;
  readonly rebuild: boolean;
  /** Progress lines (stderr). */
  readonly log: (text: string) => void;
}

export interface EnsuredGuest {
  readonly guest: GuestImage;
  readonly built: boolean;
  /** Seconds this call took. */
  readonly seconds: number;
  /** Seconds the cold build of this guest took (recorded when it was built). */
  readonly coldBuildSeconds: number | undefined;
  readonly key: string;
}

function imageIn(dir: string, kernelRelease: string): GuestImage {
  return {
    dir,
    kernel: join(dir, 'vmlinuz'),
    initrdBase: join(dir, 'initrd-base.cpio'),
    rootfs: join(dir, 'rootfs.img'),
    kernelRelease,
  };
}

async function readComplete(
  dir: string,
): Promise<{ guest: GuestImage; cold: number | undefined } | undefined> {
  try {
    await stat(join(dir, 'complete'));
    const kr = (await readFile(join(dir, 'kernel-release'), 'utf8')).trim();
    const cold = Number(
      (await readFile(join(dir, 'build-seconds'), 'utf8').catch(() => '')).trim(),
    );
    return { guest: imageIn(dir, kr), cold: Number.isFinite(cold) && cold > 0 ? cold : undefined };
  } catch {
    return undefined;
  }
}

/** Newest complete guest in the cache (used when apt-cache cannot resolve the kernel). */
async function newestCached(cacheDir: string): Promise<{ dir: string; key: string } | undefined> {
  const entries = (await readdir(cacheDir).catch(() => [])).filter((e) =>
    /^guest-[0-9a-f]+$/.test(e),
  );
  let best: { dir: string; key: string; mtime: number } | undefined;
  for (const e of entries) {
    const dir = join(cacheDir, e);
    const s = await stat(join(dir, 'complete')).catch(() => undefined);
    if (s && (!best || s.mtimeMs > best.mtime)) best = { dir, key: e.slice(6), mtime: s.mtimeMs };
  }
  return best;
}

/**
 * resolveKernel() through a small memo keyed by the apt lists' mtimes: apt-cache takes
 * seconds (tens of seconds on a loaded machine) and its answer changes only with apt-get update.
 */
async function resolveKernelMemo(cacheDir: string): Promise<KernelPick> {
  const stamp = async (p: string): Promise<number> =>
    (await stat(p).catch(() => undefined))?.mtimeMs ?? 0;
  const lists = `${await stamp('/var/lib/apt/lists')}/${await stamp('/var/cache/apt/pkgcache.bin')}`;
  const memoFile = join(cacheDir, 'kernel-pick.json');
  const Memo = z.object({ lists: z.string(), pkg: z.string(), version: z.string() });
  const memo = Memo.safeParse(JSON.parse(await readFile(memoFile, 'utf8').catch(() => '{}')));
  if (memo.success && memo.data.lists === lists)
    return { pkg: memo.data.pkg, version: memo.data.version };
  const pick = await resolveKernel();
  await writeFile(memoFile, JSON.stringify({ lists, ...pick }));
  return pick;
}

export async function ensureGuest(opts: GuestBuildOptions): Promise<EnsuredGuest> {
  const t0 = Date.now();
  const builder = join(opts.systemDir, 'builder');
  await mkdir(opts.cacheDir, { recursive: true });
  let kernel: KernelPick;
  try {
    kernel = await resolveKernelMemo(opts.cacheDir);
  } catch (err) {
    const cached = opts.rebuild ? undefined : await newestCached(opts.cacheDir);
    if (!cached) throw err;
    const found = await readComplete(cached.dir);
    if (!found) throw err;
    opts.log(
      `cannot resolve the kernel (${err instanceof Error ? err.message : String(err)}); using cached guest ${cached.key}`,
    );
    return {
      guest: found.guest,
      built: false,
      seconds: (Date.now() - t0) / 1000,
      coldBuildSeconds: found.cold,
      key: cached.key,
    };
  }
  const hash = createHash('sha256');
  hash.update(
    JSON.stringify({
      LAYOUT_VERSION,
      kernel,
      packages: GUEST_PACKAGES,
      node: process.version,
      arch: process.arch,
    }),
  );
  for (const f of ['build-guest.sh', 'extra-modules.sh'])
    hash.update(await readFile(join(builder, f)));
  // the node binary is copied into the guest: its version and size identify it cheaply
  hash.update(`node-binary ${(await stat(process.execPath)).size}`);
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(opts.cacheDir, `guest-${key}`);
  if (!opts.rebuild) {
    const found = await readComplete(dir);
    if (found) {
      return {
        guest: found.guest,
        built: false,
        seconds: (Date.now() - t0) / 1000,
        coldBuildSeconds: found.cold,
        key,
      };
    }
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const logFile = join(opts.cacheDir, `guest-${key}.build.log`);
  opts.log(`building guest ${key} (${kernel.pkg} ${kernel.version}); log: ${logFile}`);
  const logStream = createWriteStream(logFile);
  const proc = spawnProcess(
    'bash',
    [join(builder, 'build-guest.sh'), tmp, join(opts.cacheDir, 'debs')],
    {
      env: {
        ...process.env,
        VIGIL_KERNEL_PKG: kernel.pkg,
        VIGIL_KERNEL_VERSION: kernel.version,
        VIGIL_GUEST_PACKAGES: GUEST_PACKAGES.join(','),
        VIGIL_NODE: process.execPath,
      },
      stdout: 'pipe',
      stderr: 'pipe',
    },
  );
  const progress = (d: Buffer): void => {
    logStream.write(d);
    for (const l of d.toString('utf8').split('\n')) if (l.startsWith('[guest-build')) opts.log(l);
  };
  proc.child.stdout?.on('data', progress);
  proc.child.stderr?.on('data', progress);
  const timer = setTimeout(() => void proc.stop(5000), 45 * 60_000);
  const exit = await proc.exited;
  clearTimeout(timer);
  await new Promise<void>((resolve) => logStream.end(resolve));
  if (exit.exitCode !== 0) {
    const tail = (await readFile(logFile, 'utf8')).trim().split('\n').slice(-5).join(' | ');
    await rm(tmp, { recursive: true, force: true });
    throw new GuestBuildError(
      `guest build failed (exit ${String(exit.exitCode)}): ${tail} (log: ${logFile})`,
    );
  }
  const seconds = (Date.now() - t0) / 1000;
  await writeFile(join(tmp, 'build-seconds'), `${seconds.toFixed(1)}\n`);
  await writeFile(join(tmp, 'complete'), `${new Date().toISOString()}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  // keep the cache small: drop other guests (the .deb download cache stays)
  for (const e of await readdir(opts.cacheDir)) {
    if (/^guest-[0-9a-f]+(\.build\.log)?$/.test(e) && !e.startsWith(`guest-${key}`)) {
      await rm(join(opts.cacheDir, e), { recursive: true, force: true });
    }
  }
  const kr = (await readFile(join(dir, 'kernel-release'), 'utf8')).trim();
  return { guest: imageIn(dir, kr), built: true, seconds, coldBuildSeconds: seconds, key };
}
