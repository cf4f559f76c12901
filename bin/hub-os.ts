/**
 * OS updates inside the hub (the RAUC side of docs/ota.md), run by the OTA
 * wiring (bin/hub-ota.ts) next to the application agent:
 *
 *   confirm()  once the hub's services are up: on a trial boot of a new OS the
 *              hub's own health check (storage, MLS, camera, relay) decides —
 *              `rauc status mark-good` (the backend commits autoboot.txt), or
 *              `mark-bad` and a plain reboot into the committed slot. After a
 *              reset that left the trial (watchdog, power cut) it reports the
 *              rollback.
 *   run()      polls the channel for a `rootfs` target (config ota.os.pollMinutes
 *              ± 25 %): download, `rauc install` into the inactive slot, then the
 *              trial reboot — only when nothing is being recorded (checked again
 *              right before the reboot: an install takes minutes).
 *
 * Off (with the reason in `vigil hub status`) when `ota.os.enabled` is false or
 * the image is not an A/B image (no /etc/rauc/system.conf).
 */
import { join } from 'node:path';
import { isAborted, pause } from '../base/async.js';
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { VigilConfig } from '../firmware/config/config.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { HostPaths } from '../hw/os/host-paths.js';
import type { BusyPort, HealthCheck, OtaOutcome, OutcomeReporter } from '../ota/agent.js';
import { nextDelay } from '../ota/agent.js';
import type { OsBootPort } from '../ota/os-agent.js';
import { OsUpdateAgent } from '../ota/os-agent.js';
import { OS_TRIAL_FILE, runningOsVersion } from '../ota/os-cli.js';
import { boardBackend } from '../ota/rauc-backend.js';
import { RaucCli } from '../ota/rauc.js';
import type { RaucPort } from '../ota/rauc.js';
import type { Transport } from '../ota/transport.js';
import { installTrustedRoot } from '../ota/verify.js';
import { FIRMWARE_MOUNT } from '../protocol/card-layout.js';
import { RAUC_PATHS } from '../protocol/rauc-system.js';

export const OS_PATHS = {
  /** TUF metadata of the OS agent (apart from the app agent's: no shared writer). */
  state: '/var/lib/vigil/ota-os',
  /** The bundle download, in the data volume (the root filesystem has no room for an OS). */
  downloads: 'ota-os',
  /** The trial record: on the boot FAT, seen by both root slots. */
  trial: join(FIRMWARE_MOUNT, OS_TRIAL_FILE),
} as const;

export interface HubOsDeps {
  readonly config: VigilConfig;
  readonly paths: HostPaths;
  readonly logger: Logger;
  readonly fs: DurableFs;
  readonly transport: Transport;
  readonly repoUrl: string;
  readonly channel: string;
  readonly trustedRoot: () => Promise<Buffer | undefined>;
  /** The mounted data volume (undefined while locked): bundles are downloaded there. */
  readonly dataDir?: () => string | undefined;
  readonly health: HealthCheck;
  readonly busy: BusyPort;
  readonly reporter: OutcomeReporter;
  /** Tests: RAUC and the firmware's reboots (default: `rauc` and the board's backend). */
  readonly rauc?: RaucPort;
  readonly boot?: OsBootPort;
  readonly random?: () => number;
  readonly busyPollMs?: number;
  readonly trialTimeoutMs?: number;
}

export interface HubOsStatus {
  readonly enabled: boolean;
  /** The running OS (/etc/vigil/os-version). */
  readonly version: string;
  readonly last?: OtaOutcome;
  readonly note?: string;
}

/** Why OS updates cannot run here, or undefined when they can. */
export async function osUpdatesOff(
  config: VigilConfig,
  paths: HostPaths,
  fs: DurableFs,
  injected: boolean,
): Promise<string | undefined> {
  if (!config.ota.os.enabled) return 'OS updates off (ota.os.enabled is false)';
  if (injected) return undefined;
  if ((await fs.readIfExists(paths.host(RAUC_PATHS.systemConf))) === undefined)
    return `OS updates off: no ${RAUC_PATHS.systemConf} (not an A/B image)`;
  return undefined;
}

export class HubOsUpdates {
  readonly #d: HubOsDeps;
  readonly #log: Logger;
  #agent: OsUpdateAgent | undefined;
  #version = '0.0.0';
  #last: OtaOutcome | undefined;
  #note: string | undefined;
  #enabled = false;
  /** The poll loop's: a stopping hub does not reboot. */
  #signal: AbortSignal | undefined;

  constructor(d: HubOsDeps) {
    this.#d = d;
    this.#log = d.logger.child('ota-os');
  }

  /** Build the agent; false (with a note) when OS updates cannot run here. */
  async setup(): Promise<boolean> {
    const { config, paths, fs } = this.#d;
    this.#version = await runningOsVersion(paths, fs);
    const off = await osUpdatesOff(
      config,
      paths,
      fs,
      this.#d.rauc !== undefined && this.#d.boot !== undefined,
    );
    if (off !== undefined) {
      this.#note = off;
      return false;
    }
    const stateDir = paths.host(OS_PATHS.state);
    const metaDir = join(stateDir, 'metadata');
    if ((await fs.readIfExists(join(metaDir, 'root.json'))) === undefined) {
      const root = await this.#d.trustedRoot();
      if (root === undefined) {
        this.#note = 'OS updates off: no trusted root';
        return false;
      }
      await fs.ensureDir(metaDir);
      await installTrustedRoot(fs, metaDir, root);
    }
    const boot = this.#d.boot ?? (await this.#boardBoot());
    const dataDir = this.#d.dataDir;
    this.#agent = new OsUpdateAgent({
      stateDir,
      stateFile: paths.host(OS_PATHS.trial),
      ...(dataDir !== undefined
        ? {
            downloadDir: () => {
              const d = dataDir();
              return d === undefined ? undefined : join(d, OS_PATHS.downloads);
            },
          }
        : {}),
      fs,
      transport: this.#d.transport,
      repoUrl: this.#d.repoUrl,
      channel: this.#d.channel,
      rauc: this.#d.rauc ?? new RaucCli(),
      boot: {
        isTrialBoot: () => boot.isTrialBoot(),
        reboot: () => boot.reboot(),
        // The install took minutes: a recording may have started meanwhile.
        rebootIntoTrial: async () => {
          await this.#idle();
          await boot.rebootIntoTrial();
        },
      },
      health: this.#d.health,
      busy: this.#d.busy,
      reporter: {
        report: async (o) => {
          this.#last = o;
          await this.#d.reporter.report(o);
        },
      },
      runningVersion: () => runningOsVersion(paths, fs),
      logger: this.#d.logger,
      ...(this.#d.busyPollMs !== undefined ? { busyPollMs: this.#d.busyPollMs } : {}),
      ...(this.#d.trialTimeoutMs !== undefined ? { trialTimeoutMs: this.#d.trialTimeoutMs } : {}),
    });
    this.#enabled = true;
    return true;
  }

  async #boardBoot(): Promise<OsBootPort> {
    const backend = await boardBackend(this.#d.paths, this.#d.fs);
    return {
      isTrialBoot: async () => (await backend.booted())?.trial === true,
      rebootIntoTrial: async () => {
        await backend.rebootIntoPrimary();
      },
      reboot: async () => {
        await backend.rebootIntoPrimary();
      },
    };
  }

  async #idle(): Promise<void> {
    const signal = this.#signal ?? new AbortController().signal;
    let logged = false;
    while (await this.#d.busy.isBusy()) {
      if (!logged) this.#log.info('OS trial reboot waits for the recording to finish');
      logged = true;
      await pause(this.#d.busyPollMs ?? 5000, signal);
      if (signal.aborted) throw new Error('the hub is stopping: no OS trial reboot now');
    }
  }

  /** Settle an OS trial (see the module comment); undefined when there was none. */
  async confirm(signal?: AbortSignal): Promise<OtaOutcome | undefined> {
    if (this.#agent === undefined) return undefined;
    return this.#agent.confirm(signal);
  }

  /** One OS update check (the poll loop's step). */
  async check(signal?: AbortSignal): Promise<OtaOutcome> {
    if (this.#agent === undefined) throw new Error('OS updates are off here');
    const o = await this.#agent.check(signal);
    if (o.kind === 'up-to-date') this.#last ??= o;
    return o;
  }

  /** Poll until the signal aborts (or the agent reboots into a trial). */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#agent === undefined) return;
    this.#signal = signal;
    const random = this.#d.random ?? Math.random;
    while (!isAborted(signal)) {
      try {
        const o = await this.check(signal);
        if (o.kind === 'restarting') return;
      } catch (e) {
        if (isAborted(signal)) return;
        this.#log.error('OS update check failed', { error: reasonOf(e) });
      }
      await pause(nextDelay(this.#d.config.ota.os.pollMinutes * 60_000, 0.25, random), signal);
    }
  }

  status(): HubOsStatus {
    return {
      enabled: this.#enabled,
      version: this.#version,
      ...(this.#last !== undefined ? { last: this.#last } : {}),
      ...(this.#note !== undefined ? { note: this.#note } : {}),
    };
  }
}
