/**
 * Factory reset (the button held >= 5 s): erase what pairing and use
 * established, keep what makes the unit this unit. Decided in docs/pairing.md:
 *
 *   erased  the MLS state (paired phones, groups, the hub's MLS signing key),
 *           the home Wi-Fi credentials, the uplink queue, recordings and every
 *           other file the hub wrote into the data volume, and the "recovery
 *           material was escrowed" flag (so the next owner's phone gets it);
 *           the relay's phone accounts are revoked (best effort now, and again
 *           before the next rendezvous: see `RELAY_REVOKE_MARKER`)
 *   kept    the provisioning bundle (device id + pairing secret: the QR label
 *           on the case must keep working), the LUKS volume and its keyslots,
 *           the storage layer's own files (.vigil/), the relay device account
 *
 * Crash safety: a durable marker is written first and removed last; a reset
 * interrupted by a power cut is finished at the next start
 * (`resumeFactoryReset`) before anything reads the pairing state. The MLS
 * directory goes first, so even a half-done reset never leaves a hub that
 * believes it is paired to a phone whose Wi-Fi was erased.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DurableFs } from '../../hw/os/fs.js';
import type { Logger } from '../../base/logger.js';

export const FACTORY_RESET_MARKER = 'factory-reset.pending';
/** Present while the relay's phone accounts still have to be revoked. */
export const RELAY_REVOKE_MARKER = 'relay-phones.revoke';
/** Files whose removal comes first (the pairing state). */
export const ERASE_FIRST = ['mls'];

/** Entries of the data volume a reset keeps (relative to the volume root). */
export const KEPT_ENTRIES = [
  'provisioning',
  '.vigil',
  'lost+found',
  'relay-account.json',
  FACTORY_RESET_MARKER,
  RELAY_REVOKE_MARKER,
];

/** Files below kept directories that a reset still removes. */
export const ERASED_INSIDE_KEPT = ['.vigil/recovery/escrowed.json'];

export interface FactoryResetDeps {
  readonly fs: DurableFs;
  readonly logger: Logger;
  /** Revoke every phone account at the relay (best effort; absent: no relay account yet). */
  readonly revokeRelayPhones?: (signal: AbortSignal) => Promise<number>;
}

export interface FactoryResetReport {
  readonly erased: readonly string[];
  readonly relayPhonesRevoked: number | 'pending' | 'none';
}

async function entries(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

async function erase(deps: FactoryResetDeps, dataDir: string): Promise<string[]> {
  const names = await entries(dataDir);
  const order = [
    ...ERASE_FIRST.filter((n) => names.includes(n)),
    ...names.filter((n) => !ERASE_FIRST.includes(n) && !KEPT_ENTRIES.includes(n)),
  ];
  const erased: string[] = [];
  for (const n of order) {
    await rm(join(dataDir, n), { recursive: true, force: true });
    erased.push(n);
  }
  for (const f of ERASED_INSIDE_KEPT) {
    const p = join(dataDir, f);
    if ((await deps.fs.readIfExists(p)) !== undefined) {
      await deps.fs.remove(p, 'factory-reset-file');
      erased.push(f);
    }
  }
  // make the removals durable before the marker goes
  await deps.fs.writeFileAtomic(join(dataDir, RELAY_REVOKE_MARKER), 'revoke\n', 'relay-revoke');
  return erased;
}

/** Revoke relay phones if a revocation is pending; returns how many were revoked. */
export async function revokePendingRelayPhones(
  deps: FactoryResetDeps,
  dataDir: string,
  signal: AbortSignal,
): Promise<number | 'pending' | 'none'> {
  const marker = join(dataDir, RELAY_REVOKE_MARKER);
  if ((await deps.fs.readIfExists(marker)) === undefined) return 'none';
  if (!deps.revokeRelayPhones) return 'pending';
  try {
    const n = await deps.revokeRelayPhones(signal);
    await deps.fs.remove(marker, 'relay-revoke');
    return n;
  } catch (e) {
    deps.logger.warn('factory reset: relay phones not revoked yet; retried before pairing', {
      error: e,
    });
    return 'pending';
  }
}

/** Run a factory reset of the data volume mounted at `dataDir`. */
export async function factoryReset(
  deps: FactoryResetDeps,
  dataDir: string,
  signal: AbortSignal,
): Promise<FactoryResetReport> {
  const log = deps.logger;
  const marker = join(dataDir, FACTORY_RESET_MARKER);
  await deps.fs.writeFileAtomic(marker, `${new Date().toISOString()}\n`, 'factory-reset');
  const erased = await erase(deps, dataDir);
  await deps.fs.remove(marker, 'factory-reset');
  const relayPhonesRevoked = await revokePendingRelayPhones(deps, dataDir, signal);
  log.warn('factory reset done', { erased: erased.join(','), relayPhonesRevoked });
  return { erased, relayPhonesRevoked };
}

/** Finish a reset a power cut interrupted; true when one was pending. */
export async function resumeFactoryReset(
  deps: FactoryResetDeps,
  dataDir: string,
): Promise<boolean> {
  const marker = join(dataDir, FACTORY_RESET_MARKER);
  if ((await deps.fs.readIfExists(marker)) === undefined) return false;
  deps.logger.warn('finishing an interrupted factory reset');
  await erase(deps, dataDir);
  await deps.fs.remove(marker, 'factory-reset');
  return true;
}
