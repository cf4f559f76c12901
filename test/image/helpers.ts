// Shared by the image tests: a small but real Vigil-layout image built with the
// same code as the real build (sfdisk on a file, mkfs.vfat + mcopy, mkfs.ext4 -d).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assembleImage, makeExt4, makeFat } from '../../image/filesystems.js';
import { LABELS, partitionOf, planLayout, sfdiskScript } from '../../image/layout.js';
import type { Layout } from '../../image/layout.js';
import { encodeBundle } from '../../protocol/provisioning-bundle.js';

export const SMALL = { bootMiB: 32, rootMiB: 16, provisioningMiB: 16, dataMiB: 8 } as const;
export const EPOCH = 1_700_000_000;

export async function smallImage(
  dir: string,
  name = 'test.img',
  opts: { bootFile?: string; rootFile?: string } = {},
): Promise<{ image: string; layout: Layout }> {
  const layout = planLayout(SMALL);
  const bootSrc = join(dir, `${name}-boot`);
  const rootSrc = join(dir, `${name}-root`);
  await mkdir(join(bootSrc, 'sub'), { recursive: true });
  await writeFile(join(bootSrc, 'cmdline.txt'), 'console=ttyS0 root=PARTUUID=5649474c-05\n');
  await writeFile(join(bootSrc, 'sub', 'nested.dtb'), opts.bootFile ?? 'dtb');
  await mkdir(join(rootSrc, 'etc'), { recursive: true });
  await writeFile(join(rootSrc, 'etc', 'hostname'), opts.rootFile ?? 'vigil\n');
  const fs = join(dir, `${name}-fs`);
  await mkdir(fs, { recursive: true });
  await makeFat({
    output: join(fs, 'a.vfat'),
    sizeMiB: SMALL.bootMiB,
    label: LABELS.bootA,
    epoch: EPOCH,
    sourceDir: bootSrc,
    fatBits: 16,
  });
  await makeFat({
    output: join(fs, 'p.vfat'),
    sizeMiB: SMALL.provisioningMiB,
    label: LABELS.provisioning,
    epoch: EPOCH,
    fatBits: 16,
  });
  await makeExt4({
    sourceDir: rootSrc,
    output: join(fs, 'r.ext4'),
    sizeMiB: SMALL.rootMiB,
    label: LABELS.rootA,
    epoch: EPOCH,
  });
  const image = join(dir, name);
  await assembleImage(image, layout, sfdiskScript(layout), [
    { number: partitionOf(layout, 'boot-a').number, file: join(fs, 'a.vfat') },
    { number: partitionOf(layout, 'provisioning').number, file: join(fs, 'p.vfat') },
    { number: partitionOf(layout, 'root-a').number, file: join(fs, 'r.ext4') },
  ]);
  return { image, layout };
}

/** A valid provisioning bundle directory; returns its path and the secret's base32 form. */
export async function bundleDir(
  dir: string,
  secretByte = 7,
): Promise<{ dir: string; json: string }> {
  await mkdir(dir, { recursive: true });
  const json = encodeBundle({
    deviceId: 'ABCDEFGHIJKLMNOP',
    secret: new Uint8Array(32).fill(secretByte),
    batchId: 'batch-1',
    createdAt: '2026-11-22T00:00:00.000Z',
  });
  await writeFile(join(dir, 'device.json'), json, { mode: 0o600 });
  return { dir, json };
}
