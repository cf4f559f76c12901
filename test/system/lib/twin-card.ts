/**
 * The image twin for host scenarios: which twin image to boot, and a card made from it as the
 * factory and the image step make one (a copy of the image, a little bigger so that the first
 * boot grows the data partition, with one device's provisioning bundle installed).
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { run } from '../../../hw/os/run.js';
import { findRepo } from '../../../image/build.js';
import { provisionImage } from '../../../image/provision.js';
import { provisionBatch } from '../../../provisioning/batch.js';

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The twin image to boot: VIGIL_TWIN_IMAGE, else CI's image step's build-1, else
 * image/out/qemu-amd64; undefined when there is none (the scenario is a SKIP).
 */
export async function twinImage(): Promise<string | undefined> {
  const fromEnv = process.env.VIGIL_TWIN_IMAGE;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const repo = await findRepo();
  for (const p of [
    join(repo, 'image/out/qemu-amd64-ci/build-1/vigil-qemu-amd64.img'),
    join(repo, 'image/out/qemu-amd64/vigil-qemu-amd64.img'),
  ])
    if (await exists(p)) return p;
  return undefined;
}

export interface TwinCard {
  /** The card image (sparse). */
  readonly card: string;
  /** The device's provisioning bundle the card holds. */
  readonly bundle: string;
  /** What `provisionImage` installed (the services the card points at). */
  readonly provisioned: Awaited<ReturnType<typeof provisionImage>>;
}

/** A provisioned card from `image` in `workDir` (card.img), `grow` bigger (truncate's size). */
export async function twinCard(o: {
  readonly image: string;
  readonly workDir: string;
  readonly grow: string;
  readonly batchId: string;
  readonly relayUrl?: string;
}): Promise<TwinCard> {
  const card = join(o.workDir, 'card.img');
  await run('cp', ['--sparse=always', o.image, card], { timeoutMs: 10 * 60_000 });
  await run('truncate', ['-s', `+${o.grow}`, card]);
  const batch = join(o.workDir, 'batch');
  const manifest = await provisionBatch({
    count: 1,
    outDir: batch,
    fs: new DurableFs(),
    batchId: o.batchId,
    ...(o.relayUrl !== undefined ? { services: { relay: { url: o.relayUrl } } } : {}),
  });
  const device = manifest.devices[0];
  if (device === undefined) throw new Error('the factory made no device');
  const bundle = join(batch, device.bundle);
  const provisioned = await provisionImage(card, bundle);
  return { card, bundle, provisioned };
}
