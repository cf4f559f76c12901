/**
 * The OTA agent inside the hub. `withOta(services, deps)` wraps the hub's
 * HubServices (production or development) without changing them:
 *
 *   startServices  → the inner services start, then
 *                    - in a trial start (the launcher set VIGIL_OTA_TRIAL): the new
 *                      version checks its own health (storage, MLS, camera, relay)
 *                      under the trial deadline and commits, or marks the trial
 *                      failed and exits (TRIAL_FAILED_EXIT) so the next start runs
 *                      the committed slot;
 *                    - then the poll loop (interval + jitter from ota.pollMinutes),
 *                      outcomes to the phone over the config channel.
 *   a staged trial → `update-staged` (state machine: running → updating →
 *                    apply-update) → the hub stops with TRIAL_RESTART_EXIT, which
 *                    systemd (Restart=on-failure) restarts; the launcher starts the
 *                    new slot once.
 *   stopServices   → the loop stops, then the inner services.
 *
 * Everything else (including properties other areas add, e.g. `configChannel`)
 * passes through to the inner services unchanged.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { VigilConfig } from '../firmware/config/config.js';
import type { Logger } from '../base/logger.js';
import type { HubServices } from '../firmware/supervisor/hub.js';
import type { Event } from '../firmware/supervisor/state.js';
import { DurableFs } from '../hw/os/fs.js';
import type { HostPaths } from '../hw/os/host-paths.js';
import { untilAborted } from '../base/async.js';
import { reasonOf } from '../base/errors.js';
import { OtaAgent } from '../ota/agent.js';
import type { OtaOutcome, TrialRestarter } from '../ota/agent.js';
import { HubHealthCheck, MediaBusy } from '../ota/health.js';
import { ENV_TRIAL } from '../ota/launcher.js';
import { ProcessTrialProbe } from '../ota/probe.js';
import { ConfigChannelReporter } from '../ota/report.js';
import type { AppSender } from '../ota/report.js';
import { HostAppSlots } from '../ota/slots.js';
import { FetchTransport } from '../ota/transport.js';
import type { Transport } from '../ota/transport.js';
import { installTrustedRoot } from '../ota/verify.js';
import { isVersion } from '../ota/version.js';
import { resolveOta } from '../firmware/config/services.js';
import type { ResolvedOta, ServiceSource } from '../firmware/config/services.js';
import { readBundle } from '../protocol/provisioning-bundle.js';
import type { ProvisioningBundle } from '../protocol/provisioning-bundle.js';
import { OTA_ROOT_FILE } from '../protocol/services.js';
import { HubOsUpdates } from './hub-os.js';
import type { HubOsDeps, HubOsStatus } from './hub-os.js';

/** The hub exits with this to be restarted into a staged trial (any non-zero restarts). */
export const TRIAL_RESTART_EXIT = 75;
/** The trial version failed its own health check: restart into the committed slot. */
export const TRIAL_FAILED_EXIT = 76;
/** Env: the trial's health deadline in seconds (default 300: camera + relay on a Pi). */
export const ENV_TRIAL_SECONDS = 'VIGIL_OTA_TRIAL_SECONDS';

export const OTA_PATHS = {
  slots: '/opt/vigil',
  state: '/var/lib/vigil/ota',
  /** The release repository's root metadata, placed by the image; trusted on first use. */
  trustedRoot: '/etc/vigil/ota-root.json',
} as const;

export interface OtaWiringDeps {
  readonly config: VigilConfig;
  readonly paths: HostPaths;
  readonly logger: Logger;
  readonly env: NodeJS.ProcessEnv;
  /** Stop the hub with this exit code (Hub.stop); systemd restarts non-zero exits. */
  readonly stop: (exitCode: number) => void;
  readonly fs?: DurableFs;
  readonly transport?: Transport;
  readonly random?: () => number;
  /** How long the hub waits for apply-update before restarting on its own. Default 10 s. */
  readonly applyWaitMs?: number;
  /** Tests: RAUC and the firmware's reboots for the OS agent (bin/hub-os.ts). */
  readonly os?: Pick<HubOsDeps, 'rauc' | 'boot' | 'busyPollMs' | 'trialTimeoutMs'>;
}

export interface OtaWiringStatus {
  readonly enabled: boolean;
  readonly channel: string;
  readonly channelSource: ServiceSource;
  readonly repositoryUrl: string | null;
  readonly repositorySource?: ServiceSource;
  /** When the repository last answered (ISO), null when never. */
  readonly lastContact: string | null;
  readonly trial?: string;
  readonly last?: OtaOutcome;
  readonly note?: string;
  /** OS updates (RAUC): the running OS version and the agent's state. */
  readonly os?: HubOsStatus;
}

/**
 * The version of the tree this code runs from (its package.json: dist/ota/ → ../../,
 * the source tree under tsx → ../). With the base tree running, that is the base version.
 */
export async function treeVersion(): Promise<string | undefined> {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(await readFile(new URL(rel, import.meta.url), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'vigil' && typeof pkg.version === 'string' && isVersion(pkg.version))
        return pkg.version;
    } catch {
      /* the next location */
    }
  }
  return undefined;
}

/** The services plus the OTA wiring (for tests and status). */
export type OtaHubServices = HubServices & { readonly ota: OtaWiring };

export class OtaWiring {
  readonly #d: OtaWiringDeps;
  readonly #inner: HubServices;
  readonly #log: Logger;
  readonly #fs: DurableFs;
  readonly #trialVersion: string | undefined;
  readonly #trialDeadlineMs: number;
  /** One instance for every pointer writer here: its updates run one at a time. */
  readonly #slots: HostAppSlots;
  #trialTimer: NodeJS.Timeout | undefined;
  /** The trial is being (or was) marked failed: no verdict after this one. */
  #trialFailure: Promise<void> | undefined;
  #dataDir: string | undefined;
  #emit: ((e: Event) => void) | undefined;
  #loop: { ctrl: AbortController; done: Promise<void> } | undefined;
  #applyRequested: (() => void) | undefined;
  #last: OtaOutcome | undefined;
  #note: string | undefined;
  #polling = false;
  #resolved: ResolvedOta | undefined;
  #lastContact: string | undefined;
  #os: HubOsUpdates | undefined;

  constructor(inner: HubServices, d: OtaWiringDeps) {
    this.#inner = inner;
    this.#d = d;
    this.#log = d.logger.child('ota');
    this.#fs = d.fs ?? new DurableFs();
    this.#slots = new HostAppSlots(d.paths.host(OTA_PATHS.slots), this.#fs);
    const t = d.env[ENV_TRIAL];
    this.#trialVersion = t !== undefined && t !== '' ? t : undefined;
    const secs = Number(d.env[ENV_TRIAL_SECONDS] ?? '300');
    this.#trialDeadlineMs = (Number.isFinite(secs) && secs > 0 ? secs : 300) * 1000;
    if (this.#trialVersion !== undefined) this.#armTrialDeadline();
  }

  get trialVersion(): string | undefined {
    return this.#trialVersion;
  }

  /**
   * The whole trial start (unlock, pairing state, services, health) must end
   * before the deadline; a hub that never gets there (stuck locked, services
   * failing) marks the trial failed and exits. A hang of the event loop is the
   * watchdog's (WatchdogSec) to catch: this timer would not fire either.
   */
  #armTrialDeadline(): void {
    this.#trialTimer = setTimeout(() => {
      void this.#failTrial(
        `the new version did not become healthy within ${String(this.#trialDeadlineMs / 1000)} s of its start`,
      );
    }, this.#trialDeadlineMs);
  }

  /** Mark the trial failed and exit, once (stopServices waits for the mark). */
  #failTrial(reason: string): Promise<void> {
    this.#trialFailure ??= (async () => {
      this.#log.error('trial failed; restarting into the committed version', { reason });
      try {
        await this.#slots.failTrial(reason);
      } catch (e) {
        // Even without the mark the launcher runs the committed slot (the trial was launched).
        this.#log.error('could not record the failed trial', { error: reasonOf(e) });
      }
      this.#d.stop(TRIAL_FAILED_EXIT);
    })();
    return this.#trialFailure;
  }

  #status(): Record<string, unknown> {
    return this.#inner.status?.() ?? {};
  }

  #channel(): AppSender | undefined {
    const ch = (this.#inner as { configChannel?: unknown }).configChannel;
    if (typeof ch !== 'object' || ch === null) return undefined;
    return typeof (ch as { sendApp?: unknown }).sendApp === 'function'
      ? (ch as AppSender)
      : undefined;
  }

  /** Build the agent; undefined (logged) when OTA cannot run here. */
  /** The provisioning bundle's directory inside the data volume (services, OTA root). */
  async #bundleDir(): Promise<string | undefined> {
    if (this.#dataDir === undefined) return undefined;
    const { SECRETS_DIR } = await import('../firmware/storage/storage.js');
    return join(this.#dataDir, SECRETS_DIR);
  }

  /** Config file first, then the provisioning bundle (firmware/config/services.ts). */
  async #resolve(): Promise<ResolvedOta> {
    const dir = await this.#bundleDir();
    let bundle: ProvisioningBundle | undefined;
    if (dir !== undefined) {
      try {
        bundle = await readBundle(dir);
      } catch (e) {
        this.#log.warn('cannot read the provisioning bundle; OTA uses the config file only', {
          error: reasonOf(e),
        });
      }
    }
    this.#resolved = resolveOta(this.#d.config, bundle);
    return this.#resolved;
  }

  async #trustedRoot(): Promise<Buffer | undefined> {
    const { paths } = this.#d;
    const fromImage = await readFile(paths.host(OTA_PATHS.trustedRoot)).catch(() => undefined);
    if (fromImage !== undefined) return fromImage;
    const dir = await this.#bundleDir();
    return dir === undefined
      ? undefined
      : readFile(join(dir, OTA_ROOT_FILE)).catch(() => undefined);
  }

  async #agent(): Promise<OtaAgent | undefined> {
    const { config, paths } = this.#d;
    const resolved = await this.#resolve();
    const repoUrl = resolved.repositoryUrl;
    const stateDir = paths.host(OTA_PATHS.state);
    const metaDir = join(stateDir, 'metadata');
    if ((await this.#fs.readIfExists(join(metaDir, 'root.json'))) === undefined) {
      const root = await this.#trustedRoot();
      if (root === undefined) {
        this.#note = `no trusted root (${OTA_PATHS.trustedRoot}, nor ${OTA_ROOT_FILE} in the provisioning bundle): updates disabled`;
        return undefined;
      }
      await this.#fs.ensureDir(metaDir);
      await installTrustedRoot(this.#fs, metaDir, root);
    }
    const restart: TrialRestarter = {
      restartIntoTrial: (trial, signal) => this.#restartIntoTrial(trial.version, signal),
    };
    const baseVersion = await treeVersion();
    return new OtaAgent({
      ...(baseVersion !== undefined ? { baseVersion } : {}),
      stateDir,
      fs: this.#fs,
      slots: this.#slots,
      transport: this.#contactTransport(this.#d.transport ?? new FetchTransport()),
      repoUrl: repoUrl ?? 'http://invalid.invalid/',
      channel: resolved.channel,
      probe: new ProcessTrialProbe(),
      health: this.#health(),
      busy: new MediaBusy(() => this.#status()),
      reporter: {
        report: async (o) => {
          this.#last = o;
          await new ConfigChannelReporter(() => this.#channel()).report(o);
        },
      },
      restart,
      trialTimeoutMs: this.#trialDeadlineMs,
      intervalMs: config.ota.pollMinutes * 60_000,
      jitter: 0.25,
      logger: this.#d.logger,
      ...(this.#d.random ? { random: this.#d.random } : {}),
    });
  }

  /** Stage → state machine (update-staged → apply-update) → restart. */
  async #restartIntoTrial(version: string, signal?: AbortSignal): Promise<void> {
    const applied = new Promise<void>((resolve) => {
      this.#applyRequested = resolve;
    });
    this.#emit?.({ type: 'update-staged', version });
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      applied.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, this.#d.applyWaitMs ?? 10_000, false);
      }),
    ]);
    clearTimeout(timer);
    if (!waited) {
      this.#log.warn('the state machine did not apply the update; restarting anyway', { version });
      this.#d.stop(TRIAL_RESTART_EXIT);
    }
    // The stop aborts the loop that called us.
    if (signal !== undefined) await untilAborted(signal);
  }

  async startServices(
    dataDir: string,
    signal: AbortSignal,
    emit: (e: Event) => void,
    children: Parameters<HubServices['startServices']>[3],
  ): Promise<void> {
    await this.#inner.startServices(dataDir, signal, emit, children);
    this.#dataDir = dataDir;
    this.#emit = emit;
    if (this.#loop !== undefined) return;
    const ctrl = new AbortController();
    const done = this.#runLoop(ctrl.signal).catch((e: unknown) => {
      this.#log.error('the update loop failed', { error: reasonOf(e) });
    });
    this.#loop = { ctrl, done };
  }

  async #runLoop(signal: AbortSignal): Promise<void> {
    let agent: OtaAgent | undefined;
    try {
      agent = await this.#agent();
    } catch (e) {
      this.#note = `OTA setup failed: ${reasonOf(e)}`;
    }
    if (this.#trialVersion !== undefined) {
      // From here the health check's own deadline applies (its report says what failed).
      clearTimeout(this.#trialTimer);
      if (this.#trialFailure !== undefined) {
        // The start deadline passed while the agent was being set up: that verdict stands
        // (a health check now would race its mark, and could commit a failed trial).
        this.#log.warn('the trial deadline passed before its health check; not confirming');
        return;
      }
      if (agent === undefined) {
        await this.#failTrial(`the new version cannot run its update agent: ${this.#note ?? '?'}`);
        return;
      }
      let r: Awaited<ReturnType<OtaAgent['confirmTrial']>>;
      try {
        r = await agent.confirmTrial(this.#trialVersion, {
          timeoutMs: this.#trialDeadlineMs,
          signal,
        });
      } catch (e) {
        await this.#failTrial(`the trial could not be confirmed: ${reasonOf(e)}`);
        return;
      }
      if (r.kind === 'rolled-back') {
        this.#d.stop(TRIAL_FAILED_EXIT);
        return;
      }
      if (r.kind === 'interrupted') return;
      if (r.kind === 'not-a-trial') this.#log.warn('trial start without a launched trial', r);
      else this.#log.info('trial committed', { ...r });
    }
    if (agent === undefined) {
      this.#log.warn('updates disabled', { reason: this.#note ?? '?' });
      return;
    }
    const os = await this.#osUpdates(signal);
    if (this.#resolved?.repositoryUrl === undefined) {
      this.#note =
        'no OTA repository (ota.repositoryUrl, nor one in the provisioning bundle): updates disabled';
      this.#log.info(this.#note);
      return;
    }
    this.#polling = true;
    try {
      await Promise.all([agent.run(signal), os?.run(signal)]);
    } finally {
      this.#polling = false;
    }
  }

  /**
   * The OS agent (bin/hub-os.ts): set up, then settle an OS trial boot with the same
   * health check as an app trial. Undefined when OS updates are off here (noted).
   */
  async #osUpdates(signal: AbortSignal): Promise<HubOsUpdates | undefined> {
    const resolved = this.#resolved ?? (await this.#resolve());
    const os = new HubOsUpdates({
      config: this.#d.config,
      paths: this.#d.paths,
      logger: this.#d.logger,
      fs: this.#fs,
      transport: this.#contactTransport(this.#d.transport ?? new FetchTransport()),
      repoUrl: resolved.repositoryUrl ?? 'http://invalid.invalid/',
      channel: resolved.channel,
      trustedRoot: () => this.#trustedRoot(),
      dataDir: () => this.#dataDir,
      health: this.#health(),
      busy: new MediaBusy(() => this.#status()),
      reporter: {
        report: (o) => new ConfigChannelReporter(() => this.#channel()).report(o),
      },
      ...(this.#d.random ? { random: this.#d.random } : {}),
      ...this.#d.os,
    });
    this.#os = os;
    try {
      if (!(await os.setup())) {
        this.#log.info('OS updates off', { reason: os.status().note ?? '?' });
        return undefined;
      }
      const settled = await os.confirm(signal);
      if (settled !== undefined) this.#log.info('OS trial settled', { ...settled });
    } catch (e) {
      this.#log.error('OS update agent failed to start', { error: reasonOf(e) });
      return undefined;
    }
    return os;
  }

  #health(): HubHealthCheck {
    return new HubHealthCheck({
      hub: {
        dataDir: () => this.#dataDir,
        isPaired: (dir) => this.#inner.isPaired(dir),
        status: () => this.#status(),
      },
      mode: this.#d.config.mode,
      relayUrl: this.#d.config.relay.url,
    });
  }

  async stopServices(): Promise<void> {
    // A stopping hub gives no verdict on its trial (the next start runs the committed slot).
    clearTimeout(this.#trialTimer);
    const loop = this.#loop;
    this.#loop = undefined;
    loop?.ctrl.abort();
    await loop?.done;
    // A failed-trial mark in flight (the deadline fired) lands before the services go.
    await this.#trialFailure;
    await this.#inner.stopServices();
  }

  applyUpdate(version: string, signal: AbortSignal): Promise<'committed' | 'rolled-back'> {
    const pending = this.#applyRequested;
    if (pending === undefined) return this.#inner.applyUpdate(version, signal);
    this.#applyRequested = undefined;
    pending();
    this.#log.info('restarting the hub into the new version', { version });
    this.#d.stop(TRIAL_RESTART_EXIT);
    // Never settles normally: the stop aborts this effect.
    return untilAborted(signal).then(() => {
      throw new Error('hub restarting into the update');
    });
  }

  /** Record every answer from the OTA repository (for `vigil hub status`). */
  #contactTransport(inner: Transport): Transport {
    const seen = <T>(p: Promise<T>): Promise<T> =>
      p.then((v) => {
        this.#lastContact = new Date().toISOString();
        return v;
      });
    return {
      getBytes: (url, max, signal) => seen(inner.getBytes(url, max, signal)),
      getFrom: (url, offset, signal) => seen(inner.getFrom(url, offset, signal)),
    };
  }

  status(): OtaWiringStatus {
    const r = this.#resolved ?? resolveOta(this.#d.config, undefined);
    return {
      enabled: this.#polling,
      channel: r.channel,
      channelSource: r.channelSource,
      repositoryUrl: r.repositoryUrl ?? null,
      ...(r.repositorySource !== undefined ? { repositorySource: r.repositorySource } : {}),
      lastContact: this.#lastContact ?? null,
      ...(this.#trialVersion !== undefined ? { trial: this.#trialVersion } : {}),
      ...(this.#last !== undefined ? { last: this.#last } : {}),
      ...(this.#note !== undefined ? { note: this.#note } : {}),
      ...(this.#os !== undefined ? { os: this.#os.status() } : {}),
    };
  }
}

/** Wrap the hub's services with the OTA agent (see the module comment). */
export function withOta(inner: HubServices, deps: OtaWiringDeps): OtaHubServices {
  const ota = new OtaWiring(inner, deps);
  const overrides: Partial<OtaHubServices> = {
    ota,
    startServices: (...a) => ota.startServices(...a),
    stopServices: () => ota.stopServices(),
    applyUpdate: (v, s) => ota.applyUpdate(v, s),
    status: () => ({ ...(inner.status?.() ?? {}), ota: ota.status() }),
  };
  return new Proxy(inner as OtaHubServices, {
    get(target, prop) {
      if (Object.prototype.hasOwnProperty.call(overrides, prop))
        return (overrides as Record<PropertyKey, unknown>)[prop];
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
