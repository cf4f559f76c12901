/**
 * The factory's side of the provisioning bundle (format: protocol/provisioning-bundle.ts):
 * write one device's bundle durably and privately.
 */
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { DurableFs } from '../hw/os/fs.js';
import { BUNDLE_FILE, encodeBundle } from '../protocol/provisioning-bundle.js';
import type { ProvisioningBundle } from '../protocol/provisioning-bundle.js';

/** Durably write `<dir>/device.json` (directory 0700, file 0600). */
export async function writeBundle(
  fs: DurableFs,
  dir: string,
  b: ProvisioningBundle,
): Promise<string> {
  const path = join(dir, BUNDLE_FILE);
  // the directory is private before the secret lands in it
  await fs.ensureDir(dir);
  await chmod(dir, 0o700);
  await fs.writeFileAtomic(path, encodeBundle(b), 'bundle');
  await chmod(path, 0o600);
  return path;
}
