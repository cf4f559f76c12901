/**
 * The companion's state directory and its relay account.
 *
 *   <dir>/relay.json   {url, deviceId, phoneId, token}  (written by pairing, or by dev pairing)
 *   <dir>/e2ee/        the E2EE phone state (app/e2ee)
 *   <dir>/items/       the local item store (app/store.ts)
 *   <dir>/dev-wrap.key development only: the static wrap key (no MLS)
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { DurableFs } from '../hw/os/fs.js';
import { VigilError } from '../base/errors.js';
import { RelayClient } from '../protocol/relay-client.js';

export const RelayAccount = z.strictObject({
  url: z.url(),
  deviceId: z.string().min(1),
  phoneId: z.string().min(1),
  token: z.string().min(1),
});
export type RelayAccount = z.infer<typeof RelayAccount>;

export function defaultAppDir(env: NodeJS.ProcessEnv): string {
  return env.VIGIL_APP_DIR ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'vigil-app');
}

export const accountPath = (dir: string): string => join(dir, 'relay.json');
export const devKeyPath = (dir: string): string => join(dir, 'dev-wrap.key');
export const e2eeDir = (dir: string): string => join(dir, 'e2ee');

export async function saveAccount(fs: DurableFs, dir: string, acct: RelayAccount): Promise<void> {
  await fs.writeFileAtomic(
    accountPath(dir),
    JSON.stringify(RelayAccount.parse(acct), null, 2),
    'app-account',
  );
}

export async function loadAccount(fs: DurableFs, dir: string): Promise<RelayAccount | undefined> {
  const raw = await fs.readIfExists(accountPath(dir));
  if (raw === undefined) return undefined;
  try {
    return RelayAccount.parse(JSON.parse(raw.toString('utf8')));
  } catch (e) {
    throw new VigilError('ECONFIG', `${accountPath(dir)} is not a valid relay account`, {
      cause: e,
    });
  }
}

/**
 * Development mode: register a hub account on the relay and pair one phone
 * account through the rendezvous, as the real pairing does at its end. Returns
 * both credentials (the hub's for `createUplink`, the phone's for the app).
 */
export async function devPairRelay(
  relayUrl: string,
  deviceId: string,
  enrollToken?: string,
): Promise<{ device: { deviceId: string; token: string }; phone: RelayAccount }> {
  const anon = new RelayClient({ url: relayUrl });
  const dev = await anon.registerDevice(deviceId, enrollToken);
  const rendezvous = randomBytes(24).toString('base64url');
  await anon.withToken(dev.token).offerRendezvous(rendezvous);
  const ph = await anon.claimRendezvous(rendezvous);
  return {
    device: { deviceId, token: dev.token },
    phone: { url: relayUrl, deviceId, phoneId: ph.id, token: ph.token },
  };
}
