/**
 * What the one-process A/B benchmarks between two checkouts share (bench/epoch-ab.ts,
 * bench/seal-open-ab.ts): a hub and a phone paired from a checkout's own code (its
 * fixtures and MLS profile, native provider, real files in a temp directory), and the
 * process's CPU clock.
 */
import { join } from 'node:path';
import type * as Fixtures from '../dev/fixtures/paired-hub.js';
import type * as Profile from '../protocol/mls-profile.js';

/** This process's CPU time (user + system), ms. */
export const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** A hub paired with one phone, built by the code of the checkout in `dir`. */
export async function pairedCheckout(
  name: string,
  dir: string,
  tempPrefix: string,
): Promise<{
  readonly fx: typeof Fixtures;
  readonly root: string;
  readonly hub: Awaited<ReturnType<typeof Fixtures.openHub>>;
  readonly phone: NonNullable<Awaited<ReturnType<typeof Fixtures.pair>>['phone']>;
}> {
  const fx = (await import(join(dir, 'dev/fixtures/paired-hub.ts'))) as typeof Fixtures;
  const { loadMlsProfile } = (await import(join(dir, 'protocol/mls-profile.ts'))) as typeof Profile;
  const p = await loadMlsProfile({ crypto: 'native' });
  const root = fx.tempDir(`${tempPrefix}${name}-`);
  const hub = await fx.openHub(p, join(root, 'hub'));
  const { phone } = await fx.pair({
    p,
    hub,
    devicePsk: fx.newDevicePsk(),
    phoneDir: join(root, 'ph'),
  });
  if (phone === undefined) throw new Error(`pairing failed (${name})`);
  return { fx, root, hub, phone };
}
