/**
 * `vigil image provision <image> <device-bundle>`: put one device's
 * provisioning bundle into an already built image (or a flashed card), without
 * rebuilding and without mounting. The provisioning partition is rewritten
 * whole — zeroed, a fresh FAT, the bundle — so nothing of a previously
 * provisioned device (its secret) survives in free clusters.
 */
import { copyFile, chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { run } from '../hw/os/run.js';
import { VigilError } from '../base/errors.js';
import { BUNDLE_FILE, parseBundle } from '../protocol/provisioning-bundle.js';
import { OTA_ROOT_FILE, otaRootProblem } from '../protocol/services.js';
import {
  DiskError,
  fatLabel,
  fatList,
  fatRead,
  mtoolsTarget,
  partitionNumbered,
  readTable,
} from './disk.js';
import type { Runner } from './disk.js';
import { makeFat } from './filesystems.js';
import { DISK_ID, LABELS, MIB_SECTORS, SECTOR, planLayout } from './layout.js';

export class ProvisionError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EPROVISIONIMAGE', message, options);
    this.name = 'ProvisionError';
  }
}

/** The provisioning partition's number in every Vigil image (same for every board). */
export const PROVISIONING_PARTITION =
  planLayout({ bootMiB: 32, rootMiB: 1, provisioningMiB: 1, dataMiB: 1 }).partitions.find(
    (p) => p.role === 'provisioning',
  )?.number ?? 3;

export interface ProvisionResult {
  readonly image: string;
  readonly partition: number;
  readonly label: string;
  readonly files: readonly string[];
  /** What the bundle tells the hub (no secrets): relay URL, OTA channel and repository. */
  readonly services: {
    readonly relay?: string;
    readonly otaChannel?: string;
    readonly otaRepository?: string;
    readonly otaRoot: boolean;
  };
}

type Services = ProvisionResult['services'];

/** The bundle's files: a directory (flat, regular files) or a single device.json. */
async function bundleFiles(
  bundle: string,
): Promise<{ files: { name: string; path: string }[]; services: Services }> {
  let st;
  try {
    st = await lstat(bundle);
  } catch (e) {
    throw new ProvisionError(`device bundle ${bundle} does not exist`, { cause: e });
  }
  let files: { name: string; path: string }[];
  if (st.isDirectory()) {
    files = [];
    for (const n of (await readdir(bundle)).sort()) {
      const p = join(bundle, n);
      const s = await lstat(p);
      if (!s.isFile())
        throw new ProvisionError(`device bundle ${bundle}: ${n} is not a regular file`);
      files.push({ name: n, path: p });
    }
  } else if (st.isFile()) {
    files = [{ name: basename(bundle), path: bundle }];
  } else {
    throw new ProvisionError(`device bundle ${bundle} is neither a directory nor a file`);
  }
  const main = files.find((f) => f.name === BUNDLE_FILE);
  if (!main) throw new ProvisionError(`device bundle ${bundle} has no ${BUNDLE_FILE}`);
  // validated with the provisioning area's own schema; its errors never echo the secret
  const parsed = parseBundle(await readFile(main.path));
  const root = files.find((f) => f.name === OTA_ROOT_FILE);
  if (root) {
    const problem = otaRootProblem(await readFile(root.path));
    if (problem !== undefined)
      throw new ProvisionError(`device bundle ${bundle}: ${OTA_ROOT_FILE} ${problem}`);
  }
  const services: Services = {
    ...(parsed.relay ? { relay: parsed.relay.url } : {}),
    ...(parsed.ota
      ? { otaChannel: parsed.ota.channel, otaRepository: parsed.ota.repositoryUrl }
      : {}),
    otaRoot: root !== undefined,
  };
  for (const f of files) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(f.name)) {
      throw new ProvisionError(
        `device bundle file name not allowed on the provisioning partition: ${JSON.stringify(f.name)}`,
      );
    }
  }
  return { files, services };
}

export async function provisionImage(
  image: string,
  bundle: string,
  runner: Runner = run,
): Promise<ProvisionResult> {
  const { files, services } = await bundleFiles(bundle);
  const table = await readTable(image, runner);
  if (table.diskId !== DISK_ID) {
    throw new ProvisionError(
      `${image} is not a Vigil image (disk identifier 0x${table.diskId.toString(16)}, expected 0x${DISK_ID.toString(16)})`,
    );
  }
  const part = partitionNumbered(table, PROVISIONING_PARTITION, image);
  const label = await fatLabel(mtoolsTarget(image, part), runner).catch((e: unknown) => {
    throw new ProvisionError(`${image}: partition ${part.number} is not a FAT filesystem`, {
      cause: e,
    });
  });
  if (label !== LABELS.provisioning) {
    throw new DiskError(
      `${image}: partition ${part.number} is labelled ${label ?? '(none)'}, expected ${LABELS.provisioning}`,
    );
  }
  if (part.size % MIB_SECTORS !== 0)
    throw new ProvisionError(`${image}: provisioning partition is not a whole number of MiB`);
  const sizeMiB = part.size / MIB_SECTORS;
  const work = await mkdtemp(join(tmpdir(), 'vigil-provision-'));
  try {
    await chmod(work, 0o700);
    const src = join(work, 'bundle');
    await mkdir(src, { mode: 0o700 });
    for (const f of files) await copyFile(f.path, join(src, f.name));
    const fat = join(work, 'provisioning.vfat');
    const epoch = Math.floor(Date.now() / 1000);
    await makeFat({
      output: fat,
      sizeMiB,
      label: LABELS.provisioning,
      epoch,
      sourceDir: src,
      fatBits: 16,
      runner,
    });
    // no conv=sparse: every byte of the old partition is overwritten
    await runner(
      'dd',
      [
        `if=${fat}`,
        `of=${image}`,
        `bs=${SECTOR}`,
        `seek=${part.start}`,
        'conv=notrunc,fsync',
        'status=none',
      ],
      { timeoutMs: 10 * 60_000 },
    );
    // read back what the device will read
    const target = mtoolsTarget(image, part);
    const listed = await fatList(target, runner);
    for (const f of files) {
      if (!listed.includes(f.name))
        throw new ProvisionError(`${f.name} is missing from the partition after writing`);
      const back = await fatRead(target, f.name, runner);
      if (!back.equals(await readFile(f.path)))
        throw new ProvisionError(`${f.name} reads back different from the bundle`);
    }
    return {
      image,
      partition: part.number,
      label: LABELS.provisioning,
      files: files.map((f) => f.name),
      services,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
