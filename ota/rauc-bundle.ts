/**
 * A RAUC bundle (verity format, CMS-signed) of the OS, built from the card
 * image `vigil image build` made: root A's ext4 becomes the `rootfs` image,
 * boot A's files (kernel, initramfs, firmware, device trees, config.txt) the
 * `boot` archive, installed by the bundle's own hook (files replaced, the FAT
 * never reformatted: boot A also holds autoboot.txt and the A/B state).
 *
 * Partition numbers come from protocol/card-layout.ts; the image's MBR is read
 * here (readMbrPartitions) so the release side needs no image/ code.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { VigilError } from '../base/errors.js';
import { run } from '../hw/os/run.js';
import { CARD_PARTITIONS, cardPartUuid } from '../protocol/card-layout.js';
import type { CardSlot } from '../protocol/card-layout.js';
import { raucCompatible, SLOT_BOOTNAMES } from '../protocol/rauc-system.js';
import { OS_TRIAL_FILE, STATE_FILE, TRYBOOT_FLAG_FILE } from './rauc-backend.js';

export class RaucBundleError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTABUNDLE', message, options);
    this.name = 'RaucBundleError';
  }
}

export interface MbrPartition {
  readonly number: number;
  readonly type: number;
  /** Byte offset and length in the image. */
  readonly offset: number;
  readonly length: number;
}

const SECTOR = 512;

/** The partitions of an MBR disk image: primaries 1-4, logicals 5+ through the EBR chain. */
export async function readMbrPartitions(image: string): Promise<MbrPartition[]> {
  const fh = await open(image, 'r');
  try {
    const sector = async (lba: number): Promise<Buffer> => {
      const b = Buffer.alloc(SECTOR);
      const { bytesRead } = await fh.read(b, 0, SECTOR, lba * SECTOR);
      if (bytesRead !== SECTOR) throw new RaucBundleError(`${image}: short read at LBA ${lba}`);
      if (b[510] !== 0x55 || b[511] !== 0xaa)
        throw new RaucBundleError(`${image}: no MBR/EBR signature at LBA ${String(lba)}`);
      return b;
    };
    const entry = (b: Buffer, i: number): { type: number; start: number; sectors: number } => ({
      type: b[446 + 16 * i + 4] ?? 0,
      start: b.readUInt32LE(446 + 16 * i + 8),
      sectors: b.readUInt32LE(446 + 16 * i + 12),
    });
    const mbr = await sector(0);
    const out: MbrPartition[] = [];
    let extStart: number | undefined;
    for (let i = 0; i < 4; i++) {
      const e = entry(mbr, i);
      if (e.type === 0) continue;
      out.push({
        number: i + 1,
        type: e.type,
        offset: e.start * SECTOR,
        length: e.sectors * SECTOR,
      });
      if (e.type === 0x05 || e.type === 0x0f || e.type === 0x85) extStart = e.start;
    }
    if (extStart !== undefined) {
      let ebr = extStart;
      for (let n = 5; n < 64; n++) {
        const b = await sector(ebr);
        const cur = entry(b, 0);
        if (cur.type !== 0)
          out.push({
            number: n,
            type: cur.type,
            offset: (ebr + cur.start) * SECTOR,
            length: cur.sectors * SECTOR,
          });
        const next = entry(b, 1);
        if (next.type === 0 || next.start === 0) break;
        ebr = extStart + next.start;
      }
    }
    return out;
  } finally {
    await fh.close();
  }
}

async function copyRange(image: string, p: MbrPartition, dest: string): Promise<void> {
  if (p.length === 0) throw new RaucBundleError(`partition ${String(p.number)} is empty`);
  await pipeline(
    createReadStream(image, { start: p.offset, end: p.offset + p.length - 1 }),
    createWriteStream(dest),
  );
}

/** A slot's kernel command line from the image's: root and rauc.slot follow the slot. */
export function slotCmdline(imageCmdline: string, slot: CardSlot): string {
  const root = cardPartUuid(slot === 'a' ? 'root-a' : 'root-b');
  const words = imageCmdline
    .trim()
    .split(/\s+/)
    .filter((w) => w !== '' && !w.startsWith('root=') && !w.startsWith('rauc.slot='));
  return `${[...words, `root=PARTUUID=${root}`, `rauc.slot=${SLOT_BOOTNAMES[slot]}`].join(' ')}\n`;
}

/**
 * The card's own state on the root filesystem (not the OS's): what the running root's
 * /var/lib/vigil holds but `data` (the data volume's mount point) and `ota` (the app agent's
 * slots, which are per root slot). The storage key material (the board key's salt, the
 * twin's development key file, the phone-unlock channel), the grown-partition flag and the OS
 * agent's TUF metadata: without them the new OS could not unlock the data volume.
 */
export const CARD_STATE_DIR = '/var/lib/vigil';
export const CARD_STATE_SKIP = ['data', 'ota'] as const;

/**
 * The bundle's hook. A boot slot (`slot-install`): its files replaced. A root slot
 * (`slot-post-install`, RAUC has it mounted at RAUC_SLOT_MOUNT_POINT): the card's state
 * (CARD_STATE_DIR) copied in from the running root. Runs as root under RAUC with
 * RAUC_SLOT_NAME, RAUC_SLOT_DEVICE, RAUC_IMAGE_NAME (and RAUC_SLOT_MOUNT_POINT) set.
 */
export function bundleHook(): string {
  return [
    '#!/bin/sh',
    '# Vigil RAUC bundle hook (ota/rauc-bundle.ts): a boot slot gets its files replaced;',
    '# the FAT is never reformatted (boot A also holds autoboot.txt and the A/B state).',
    '# A root slot gets the card state of the running root (key material: the data volume).',
    'set -eu',
    'if [ "${1:-}" = slot-post-install ]; then',
    '  case "$RAUC_SLOT_NAME" in rootfs.*) ;; *) exit 0 ;; esac',
    `  [ -d ${CARD_STATE_DIR} ] || exit 0`,
    `  dest="$RAUC_SLOT_MOUNT_POINT${CARD_STATE_DIR}"`,
    '  mkdir -p "$dest"',
    `  find ${CARD_STATE_DIR} -mindepth 1 -maxdepth 1 ${CARD_STATE_SKIP.map((n) => `! -name ${n}`).join(' ')} -exec cp -a -t "$dest" {} +`,
    '  sync',
    '  exit 0',
    'fi',
    '[ "${1:-}" = slot-install ] || exit 0',
    'case "$RAUC_SLOT_NAME" in',
    `  boot.0) name=${SLOT_BOOTNAMES.a} ;;`,
    `  boot.1) name=${SLOT_BOOTNAMES.b} ;;`,
    '  *) echo "vigil hook: unexpected slot $RAUC_SLOT_NAME" >&2; exit 1 ;;',
    'esac',
    'mnt=$(mktemp -d)',
    'mount -t vfat "$RAUC_SLOT_DEVICE" "$mnt"',
    'trap \'umount "$mnt"; rmdir "$mnt"\' EXIT',
    // boot A also holds the A/B rule, the backend's state and the OS agent's trial record
    `find "$mnt" -mindepth 1 -maxdepth 1 ! -name autoboot.txt ! -name ${STATE_FILE} ! -name ${TRYBOOT_FLAG_FILE} ! -name ${OS_TRIAL_FILE} -exec rm -rf {} +`,
    'tar -x -f "$RAUC_IMAGE_NAME" -C "$mnt" --no-same-owner --no-same-permissions',
    'mv "$mnt/cmdline-$name.txt" "$mnt/cmdline.txt"',
    'rm -f "$mnt"/cmdline-?.txt',
    'sync',
    '',
  ].join('\n');
}

export interface RootfsBundleInput {
  /** The card image of `vigil image build` (uncompressed .img). */
  readonly image: string;
  /** Board name: the bundle's compatible is raucCompatible(board). */
  readonly board: string;
  readonly version: string;
  /** CMS signing certificate and key (PEM). */
  readonly cert: string;
  readonly key: string;
  readonly out: string;
  /** Scratch directory (removed afterwards). */
  readonly workDir: string;
  /** RAUC's adaptive mode for the rootfs image (block-hash-index). */
  readonly adaptive?: boolean;
  /**
   * An ext4 image to ship as the root instead of the image's root A (tests: the same root
   * edited, or shrunk with resize2fs); boot A's files still come from `image`.
   */
  readonly rootfs?: string;
  /** Extra mksquashfs arguments (RAUC's --mksquashfs-args), e.g. "-noI -noD -noF -noX". */
  readonly mksquashfsArgs?: string;
  readonly signal?: AbortSignal;
}

export interface RootfsBundleResult {
  readonly out: string;
  readonly bytes: number;
  readonly rootfsBytes: number;
}

/** Build the OS bundle from an image: root A → rootfs.ext4, boot A's files → boot.tar. */
export async function buildRootfsBundle(input: RootfsBundleInput): Promise<RootfsBundleResult> {
  const parts = await readMbrPartitions(input.image);
  const part = (n: number, what: string): MbrPartition => {
    const p = parts.find((x) => x.number === n);
    if (p === undefined)
      throw new RaucBundleError(`${input.image} has no partition ${String(n)} (${what})`);
    return p;
  };
  const rootA = part(CARD_PARTITIONS['root-a'], 'root A');
  const bootA = part(CARD_PARTITIONS['boot-a'], 'boot A');
  const work = input.workDir;
  const dir = join(work, 'bundle');
  const bootFiles = join(work, 'boot');
  await rm(work, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await mkdir(bootFiles, { recursive: true });
  const signal = input.signal ? { signal: input.signal } : {};
  try {
    if (input.rootfs === undefined) await copyRange(input.image, rootA, join(dir, 'rootfs.ext4'));
    // sparse: an ext4 image is mostly holes
    else
      await run('cp', ['--sparse=always', input.rootfs, join(dir, 'rootfs.ext4')], {
        timeoutMs: 600_000,
        ...signal,
      });
    const bootImg = join(work, 'boot.vfat');
    await copyRange(input.image, bootA, bootImg);
    await run('mcopy', ['-s', '-n', '-i', bootImg, '::/*', `${bootFiles}/`], {
      timeoutMs: 600_000,
      ...signal,
    });
    for (const f of ['autoboot.txt', STATE_FILE, TRYBOOT_FLAG_FILE])
      await rm(join(bootFiles, f), { force: true });
    const cmdline = join(bootFiles, 'cmdline.txt');
    let base: string;
    try {
      base = await readFile(cmdline, 'utf8');
    } catch (e) {
      throw new RaucBundleError(`${input.image}: boot A has no cmdline.txt`, { cause: e });
    }
    await rm(cmdline);
    for (const slot of ['a', 'b'] as const)
      await writeFile(
        join(bootFiles, `cmdline-${SLOT_BOOTNAMES[slot]}.txt`),
        slotCmdline(base, slot),
      );
    const entries = (await readdir(bootFiles)).sort();
    await run(
      'tar',
      [
        '-c',
        '-f',
        join(dir, 'boot.tar'),
        '-C',
        bootFiles,
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--',
        ...entries,
      ],
      { timeoutMs: 600_000, ...signal },
    );
    await writeFile(join(dir, 'hook.sh'), bundleHook(), { mode: 0o755 });
    await writeFile(
      join(dir, 'manifest.raucm'),
      [
        '[update]',
        `compatible=${raucCompatible(input.board)}`,
        `version=${input.version}`,
        '',
        '[bundle]',
        'format=verity',
        '',
        '[hooks]',
        'filename=hook.sh',
        '',
        '[image.rootfs]',
        'filename=rootfs.ext4',
        'hooks=post-install',
        ...(input.adaptive === true ? ['adaptive=block-hash-index'] : []),
        '',
        '[image.boot]',
        'filename=boot.tar',
        'hooks=install',
        '',
      ].join('\n'),
    );
    const tmpOut = `${input.out}.partial`;
    await rm(tmpOut, { force: true });
    const squash =
      input.mksquashfsArgs !== undefined ? [`--mksquashfs-args=${input.mksquashfsArgs}`] : [];
    await run(
      'rauc',
      ['bundle', `--cert=${input.cert}`, `--key=${input.key}`, ...squash, dir, tmpOut],
      {
        timeoutMs: 60 * 60_000,
        ...signal,
      },
    );
    await rename(tmpOut, input.out);
    return {
      out: input.out,
      bytes: (await stat(input.out)).size,
      rootfsBytes: input.rootfs === undefined ? rootA.length : (await stat(input.rootfs)).size,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A development CMS signing key and self-signed certificate (tests, benches, the twin). */
export async function makeDevSigningKey(
  dir: string,
  name = 'dev',
): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true });
  const cert = join(dir, `${name}.cert.pem`);
  const key = join(dir, `${name}.key.pem`);
  await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '3650',
      '-subj',
      `/CN=Vigil OS updates (${name}, development only)`,
    ],
    { timeoutMs: 60_000 },
  );
  return { cert, key };
}
