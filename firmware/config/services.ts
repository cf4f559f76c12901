/**
 * Which relay and OTA repository the hub uses, and where that came from
 * (docs/pairing.md, "Services"):
 *
 *   relay:       the phone's choice at pairing (kept in the data volume)
 *                > relay.url of the config file > the provisioning bundle
 *   OTA repo:    ota.repositoryUrl of the config file > the bundle
 *   OTA channel: ota.channel of the config file > the bundle > "stable"
 *   trust root:  /etc/vigil/ota-root.json of the image > ota-root.json of the bundle
 *
 * The config file wins over the bundle: it is what an integrator builds into an
 * image on purpose; the bundle is the factory's default for every unit. A
 * phone's explicit choice is the newest and the user's own, so it wins over both.
 *
 * Also here: the last contact with each service, for `vigil hub status`.
 */
import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../../base/errors.js';
import { httpRequest } from '../../base/http.js';
import type { HttpRequester } from '../../base/http.js';
import type { DurableFs } from '../../hw/os/fs.js';
import type { ProvisioningBundle } from '../../protocol/provisioning-bundle.js';
import { DEFAULT_OTA_CHANNEL, RelayServiceSchema } from '../../protocol/services.js';
import type { RelayService } from '../../protocol/services.js';
import type { VigilConfig } from './config.js';

/** The relay a phone chose at pairing, inside the data volume. */
export const RELAY_OVERRIDE_FILE = 'relay-override.json';

export type ServiceSource = 'pairing' | 'config' | 'bundle' | 'default';

export interface ResolvedRelay {
  readonly url: string;
  readonly enrollToken?: string | undefined;
  readonly source: ServiceSource;
}

export interface ResolvedOta {
  readonly repositoryUrl?: string;
  readonly repositorySource?: ServiceSource;
  readonly channel: string;
  readonly channelSource: ServiceSource;
}

export class ServicesError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ESERVICES', message, options);
    this.name = 'ServicesError';
  }
}

type BundleServices = Pick<ProvisioningBundle, 'relay' | 'ota'> | undefined;

export function resolveRelay(
  config: Pick<VigilConfig, 'relay'>,
  bundle: BundleServices,
  override: RelayService | undefined,
): ResolvedRelay | undefined {
  if (override !== undefined) return { ...override, source: 'pairing' };
  if (config.relay.url !== undefined) return { url: config.relay.url, source: 'config' };
  if (bundle?.relay !== undefined) return { ...bundle.relay, source: 'bundle' };
  return undefined;
}

export function resolveOta(config: Pick<VigilConfig, 'ota'>, bundle: BundleServices): ResolvedOta {
  const repo: Pick<ResolvedOta, 'repositoryUrl' | 'repositorySource'> =
    config.ota.repositoryUrl !== undefined
      ? { repositoryUrl: config.ota.repositoryUrl, repositorySource: 'config' }
      : bundle?.ota !== undefined
        ? { repositoryUrl: bundle.ota.repositoryUrl, repositorySource: 'bundle' }
        : {};
  const channel: Pick<ResolvedOta, 'channel' | 'channelSource'> =
    config.ota.channel !== undefined
      ? { channel: config.ota.channel, channelSource: 'config' }
      : bundle?.ota !== undefined
        ? { channel: bundle.ota.channel, channelSource: 'bundle' }
        : { channel: DEFAULT_OTA_CHANNEL, channelSource: 'default' };
  return { ...repo, ...channel };
}

/** The relay a phone chose, or undefined; a damaged file is an error naming it and the field. */
export async function readRelayOverride(
  fs: DurableFs,
  dataDir: string,
): Promise<RelayService | undefined> {
  const path = join(dataDir, RELAY_OVERRIDE_FILE);
  const raw = await fs.readIfExists(path);
  if (raw === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new ServicesError(`${path}: not valid JSON`, { cause: e });
  }
  const r = RelayServiceSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ServicesError(
      `${path}: field "${issue?.path.join('.') ?? ''}" ${issue?.message ?? 'is invalid'}`,
    );
  }
  return r.data;
}

/** Durably keep the phone's relay choice (0600: it may hold an enrollment token). */
export async function saveRelayOverride(
  fs: DurableFs,
  dataDir: string,
  relay: RelayService,
): Promise<void> {
  const checked = RelayServiceSchema.parse(relay);
  const path = join(dataDir, RELAY_OVERRIDE_FILE);
  await fs.writeFileAtomic(path, JSON.stringify(checked) + '\n', 'relay-override');
  await chmod(path, 0o600);
}

/** When the hub last heard from the relay (any HTTP answer counts; OTA: bin/hub-ota.ts). */
export class ServiceContacts {
  #relay: number | undefined;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  relayContacted(): void {
    this.#relay = this.#now();
  }

  /** ISO time, or null when never. */
  get lastRelayContact(): string | null {
    return this.#relay === undefined ? null : new Date(this.#relay).toISOString();
  }

  /** An HTTP client that records each answer from the relay. */
  relayHttp(inner: HttpRequester = httpRequest): HttpRequester {
    return async (url, init) => {
      const res = await inner(url, init);
      this.relayContacted();
      return res;
    };
  }
}
