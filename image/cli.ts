/**
 * `vigil image`: build SD card images and write a device's provisioning
 * bundle into one; on the device, grow the data partition on first boot.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command, CommandContext } from '../base/command.js';
import { UsageError, choiceOption, parseOptions, subcommandError } from '../base/command.js';
import { run } from '../hw/os/run.js';
import { BOARD_NAMES, KERNEL_SOURCES, boardOf } from './boards.js';
import type { KernelSource } from './boards.js';
import { OTA_ROOT_FILE } from '../protocol/services.js';

const USAGE = `
Usage: vigil image build --board rpi-arm64|qemu-amd64 [--out DIR] [options]
       vigil image provision <image> <device-bundle>
       vigil image reproduce --board BOARD [--out DIR] [options]
       vigil image diff <a.img> <b.img>
       vigil image grow-data [--device DEV]          (on the device, first boot)
       vigil image twin-report                       (qemu-amd64 twin, system tests)

build      Debian bookworm + kernel + firmware + Vigil into a flashable .img, .img.xz,
           .img.sha256 and a package manifest (runs as root; arm64 runs emulated).
provision  copy a device's provisioning bundle (directory holding device.json, or
           the device.json file) into the image's provisioning partition; no rebuild.
reproduce  build twice from the same inputs and check the images are byte-identical;
           names the first differing file when they are not.
diff       compare two images; names the first differing partition and file.

Build options:
  --board NAME            ${BOARD_NAMES.join(' | ')}
  --out DIR               output directory (default image/out/<board>)
  --kernel-source SRC     debian (default) | raspberrypi (Raspberry Pi's archive and kernel,
                          with the bcm2835-codec H.264 encoder; needs --rpi-keyring)
  --rpi-keyring FILE      OpenPGP keyring of Raspberry Pi's archive
  --rauc-keyring FILE     CA or certificate(s) OS update bundles must be signed by (PEM),
                          installed as /etc/rauc/keyring.pem; without it RAUC refuses all
  --os-version X.Y.Z      the OS version in /etc/vigil/os-version (what OS updates compare;
                          default: Vigil's package.json version)
  --mirror URL            Debian mirror (default http://deb.debian.org/debian)
  --source-date-epoch N   timestamps in the image (default $SOURCE_DATE_EPOCH, else the
                          last commit's time)
  --cache DIR             downloads and work space (default image/.cache)
  --no-xz                 skip the .xz
`;

interface BuildFlags {
  board: string;
  out?: string;
  kernelSource: KernelSource;
  rpiKeyring?: string;
  raucKeyring?: string;
  osVersion?: string;
  mirror?: string;
  sourceDateEpoch?: number;
  cache?: string;
  xz: boolean;
}

function parseBuildFlags(argv: readonly string[]): BuildFlags {
  const parsed = parseOptions(argv, {
    board: { type: 'string' },
    out: { type: 'string' },
    'kernel-source': { type: 'string' },
    'rpi-keyring': { type: 'string' },
    'rauc-keyring': { type: 'string' },
    'os-version': { type: 'string' },
    mirror: { type: 'string' },
    'source-date-epoch': { type: 'string' },
    cache: { type: 'string' },
    'no-xz': { type: 'boolean' },
  });
  const v = parsed.values;
  if (v.board === undefined)
    throw new UsageError(`--board is required (${BOARD_NAMES.join(' | ')})`);
  choiceOption(v.board, '--board', BOARD_NAMES);
  const ks = choiceOption(v['kernel-source'], '--kernel-source', KERNEL_SOURCES) ?? 'debian';
  if (ks === 'raspberrypi' && v.board !== 'rpi-arm64')
    throw new UsageError('--kernel-source raspberrypi is for --board rpi-arm64');
  if (ks === 'raspberrypi' && v['rpi-keyring'] === undefined) {
    throw new UsageError(
      '--kernel-source raspberrypi needs --rpi-keyring FILE (Raspberry Pi archive signing key)',
    );
  }
  if (v['os-version'] !== undefined && !/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(v['os-version']))
    throw new UsageError(`--os-version must be x.y.z, got "${v['os-version']}"`);
  let sde: number | undefined;
  if (v['source-date-epoch'] !== undefined) {
    if (!/^\d{1,12}$/.test(v['source-date-epoch']))
      throw new UsageError(
        `--source-date-epoch must be whole seconds since 1970, got "${v['source-date-epoch']}"`,
      );
    sde = Number(v['source-date-epoch']);
  }
  return {
    board: v.board,
    kernelSource: ks,
    xz: v['no-xz'] !== true,
    ...(v.out !== undefined ? { out: v.out } : {}),
    ...(v['rpi-keyring'] !== undefined ? { rpiKeyring: v['rpi-keyring'] } : {}),
    ...(v['rauc-keyring'] !== undefined ? { raucKeyring: v['rauc-keyring'] } : {}),
    ...(v['os-version'] !== undefined ? { osVersion: v['os-version'] } : {}),
    ...(v.mirror !== undefined ? { mirror: v.mirror } : {}),
    ...(sde !== undefined ? { sourceDateEpoch: sde } : {}),
    ...(v.cache !== undefined ? { cache: v.cache } : {}),
  };
}

/** SOURCE_DATE_EPOCH: flag, environment, else the time of the last commit. */
export async function resolveEpoch(
  flag: number | undefined,
  env: NodeJS.ProcessEnv,
  repo: string,
): Promise<number> {
  if (flag !== undefined) return flag;
  const fromEnv = env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!/^\d{1,12}$/.test(fromEnv))
      throw new UsageError('SOURCE_DATE_EPOCH must be whole seconds since 1970');
    return Number(fromEnv);
  }
  try {
    const r = await run('git', ['-C', repo, 'log', '-1', '--format=%ct'], { timeoutMs: 10_000 });
    const n = Number(r.stdout.toString('utf8').trim());
    if (Number.isInteger(n) && n > 0) return n;
  } catch {
    /* not a git checkout */
  }
  throw new UsageError('no SOURCE_DATE_EPOCH: pass --source-date-epoch N (not a git checkout)');
}

async function build(
  ctx: CommandContext,
  argv: readonly string[],
  twice: boolean,
): Promise<number> {
  const f = parseBuildFlags(argv);
  const { buildImage, findRepo } = await import('./build.js');
  const repo = await findRepo();
  const epoch = await resolveEpoch(f.sourceDateEpoch, ctx.env, repo);
  const out = f.out ?? join(repo, 'image', 'out', f.board);
  const print = (l: string): void => {
    ctx.stdout(l + '\n');
  };
  const opts = {
    board: boardOf(f.board),
    kernelSource: f.kernelSource,
    sourceDateEpoch: epoch,
    compress: f.xz,
    print,
    repo,
    ...(f.mirror !== undefined ? { mirror: f.mirror } : {}),
    ...(f.rpiKeyring !== undefined ? { rpiKeyring: f.rpiKeyring } : {}),
    ...(f.raucKeyring !== undefined ? { raucKeyring: f.raucKeyring } : {}),
    ...(f.osVersion !== undefined ? { osVersion: f.osVersion } : {}),
    ...(f.cache !== undefined ? { cacheDir: f.cache } : {}),
  };
  if (!twice) {
    await buildImage({ ...opts, outDir: out });
    return 0;
  }
  // one commit for both builds, however the working tree moves meanwhile
  const a = await buildImage({ ...opts, outDir: join(out, 'build-1') });
  const b = await buildImage({
    ...opts,
    outDir: join(out, 'build-2'),
    ...(a.commit !== undefined ? { commit: a.commit } : {}),
  });
  const { diffImages } = await import('./diff.js');
  const d = await diffImages(a.image, b.image, join(out, 'diff-work'));
  print(d.summary);
  return d.identical ? 0 : 1;
}

async function provision(ctx: CommandContext, argv: readonly string[]): Promise<number> {
  const { positionals } = parseOptions(argv, {}, true);
  if (positionals.length !== 2) throw new UsageError('provision needs <image> <device-bundle>');
  const { provisionImage } = await import('./provision.js');
  const r = await provisionImage(positionals[0] ?? '', positionals[1] ?? '');
  ctx.stdout(
    `provisioned ${r.image}: ${r.files.join(', ')} into partition ${r.partition} (${r.label})\n` +
      `  relay: ${r.services.relay ?? '(none in the bundle: the hub config decides)'}\n` +
      `  ota:   ${r.services.otaRepository !== undefined ? `${r.services.otaRepository} channel ${r.services.otaChannel ?? '?'}` : '(none in the bundle)'}` +
      `${r.services.otaRoot ? `, trust root ${OTA_ROOT_FILE}` : ''}\n`,
  );
  return 0;
}

async function diff(ctx: CommandContext, argv: readonly string[]): Promise<number> {
  const { positionals } = parseOptions(argv, {}, true);
  if (positionals.length !== 2) throw new UsageError('diff needs <a.img> <b.img>');
  const { diffImages } = await import('./diff.js');
  const work = await mkdtemp(join(tmpdir(), 'vigil-image-diff-'));
  try {
    const d = await diffImages(positionals[0] ?? '', positionals[1] ?? '', work);
    ctx.stdout(d.summary + '\n');
    return d.identical ? 0 : 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function growData(ctx: CommandContext, argv: readonly string[]): Promise<number> {
  const device = parseOptions(argv, { device: { type: 'string' } }).values.device;
  const { growDataOnDevice } = await import('./grow.js');
  const r = await growDataOnDevice({ ...(device !== undefined ? { device } : {}), env: ctx.env });
  ctx.stdout(r.message + '\n');
  return 0;
}

async function twinReport(ctx: CommandContext, argv: readonly string[]): Promise<number> {
  parseOptions(argv, {});
  const { twinReport: report } = await import('./twin-report.js');
  return report({
    print: (l) => {
      ctx.stdout(l + '\n');
    },
    env: ctx.env,
  });
}

export const command: Command = {
  name: 'image',
  summary: 'build and provision SD card images',
  usage: USAGE,
  subcommands: {
    build: USAGE,
    reproduce: USAGE,
    provision: `\nUsage: vigil image provision <image> <device-bundle>\n\nCopies a device's provisioning bundle (a directory holding device.json, or the\ndevice.json file) into the image's provisioning partition; no rebuild.\n`,
    diff: `\nUsage: vigil image diff <a.img> <b.img>\n\nCompares two images; names the first differing partition and file (exit 1).\n`,
    'grow-data': `\nUsage: vigil image grow-data [--device DEV]\n\nOn the device, first boot: grows the data partition to the end of the card.\n`,
    'twin-report': `\nUsage: vigil image twin-report\n\nIn the qemu-amd64 twin (system tests): prints what the device found.\n`,
  },
  badValueExamples: [
    ['build', '--board', 'pi5'],
    ['build', '--board', 'rpi-arm64', '--source-date-epoch', 'yesterday'],
    ['reproduce', '--board', 'qemu-amd64', '--kernel-source', 'gentoo'],
  ],
  async run(ctx: CommandContext): Promise<number> {
    const [sub, ...rest] = ctx.argv;
    switch (sub) {
      case 'build':
        return build(ctx, rest, false);
      case 'reproduce':
        return build(ctx, rest, true);
      case 'provision':
        return provision(ctx, rest);
      case 'diff':
        return diff(ctx, rest);
      case 'grow-data':
        return growData(ctx, rest);
      case 'twin-report':
        return twinReport(ctx, rest);
      case undefined:
      default:
        throw subcommandError(sub, ['build', 'provision', 'reproduce', 'diff', 'grow-data']);
    }
  },
};
