/**
 * The hub supervisor: wires the pure state machine to the real world. The
 * product capabilities (storage unlock, pairing, media + uplink services, OTA)
 * arrive through the `HubServices` port; the composition root (cli.ts) picks
 * the production or the development (simulated hardware) implementation.
 */
import { writeFile, mkdir, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Notifier } from '../../hw/os/sd-notify.js';
import type { VigilConfig } from '../config/config.js';
import type { Logger } from '../../base/logger.js';
import { ChildSupervisor } from './children.js';
import type { ChildDefinition, ChildStatus } from './children.js';
import { Executor } from './executor.js';
import type { EffectHandlers } from './executor.js';
import { describe } from './state.js';
import type { Event, State } from './state.js';

export type UnlockResult =
  | { readonly ok: true; readonly dataDir: string }
  | { readonly ok: false; readonly reason: string; readonly waitingFor?: string };

/** What the supervisor needs from the rest of the product. */
export interface HubServices {
  /** Try the configured key sources in order; resolves once unlocked or definitively locked. */
  unlockStorage(signal: AbortSignal): Promise<UnlockResult>;
  /** True when at least one phone is paired. */
  isPaired(dataDir: string): Promise<boolean>;
  /** Open the pairing window; later outcomes are reported through `emit`. */
  startPairing(
    dataDir: string,
    signal: AbortSignal,
    emit: (e: Event) => void,
    reason?: 'first-boot' | 'button' | 'factory-reset',
  ): Promise<void>;
  /** Erase what pairing established (phones, relay phones, home Wi-Fi); see docs/pairing.md. */
  factoryReset?(dataDir: string, signal: AbortSignal): Promise<void>;
  stopPairing(): Promise<void>;
  /** Start recording, uplink and the OTA agent; problems are reported through `emit`. */
  startServices(
    dataDir: string,
    signal: AbortSignal,
    emit: (e: Event) => void,
    children: ChildSupervisor,
  ): Promise<void>;
  stopServices(): Promise<void>;
  /** Release what outlives the services (the home Wi-Fi supplicant...) when the hub exits. */
  shutdown?(): Promise<void>;
  applyUpdate(version: string, signal: AbortSignal): Promise<'committed' | 'rolled-back'>;
  /** Extra status fields (encoder path, queue depth...). */
  status?(): Record<string, unknown>;
}

export interface HubOptions {
  readonly config: VigilConfig;
  readonly logger: Logger;
  readonly notifier: Notifier;
  readonly services: HubServices;
  /** Where the status file goes (…/run/vigil/status.json). */
  readonly statusFile: string;
  /** Hard deadline for a clean shutdown. */
  readonly shutdownDeadlineMs?: number;
  /** While locked, try the key sources again this often (default 30 s). */
  readonly unlockRetryMs?: number;
  /** Every state entered (the status LED: firmware/supervisor/panel.ts). */
  readonly onState?: (state: State) => void;
  /** Rewrite the status file this often, so service fields (last contacts) stay current (default 30 s). */
  readonly statusRefreshMs?: number;
}

export interface HubStatus {
  readonly state: State['name'];
  readonly summary: string;
  readonly since: string;
  readonly pid: number;
  readonly children: readonly ChildStatus[];
  readonly history: readonly { state: string; event: string }[];
  readonly services: Record<string, unknown>;
}

export class Hub {
  readonly executor: Executor;
  readonly children: ChildSupervisor;
  readonly #opts: HubOptions;
  #since = new Date();
  #exitCode = 0;
  #stopWatchdog: () => void = () => undefined;
  #statusWrite: Promise<void> = Promise.resolve();
  #unlocking = false;

  constructor(opts: HubOptions) {
    this.#opts = opts;
    const log = opts.logger;
    this.children = new ChildSupervisor(opts.config.restart, log.child('child'), {
      onCrashLoop: (child) => {
        this.executor.dispatch({ type: 'child-crash-loop', child });
      },
      onRecovered: (child) => {
        this.executor.dispatch({ type: 'child-recovered', child });
      },
    });
    const emit = (e: Event): void => {
      this.executor.dispatch(e);
    };
    const svc = opts.services;
    const handlers: EffectHandlers = {
      'unlock-storage': async (_e, signal) => {
        this.#unlocking = true;
        const r = await svc.unlockStorage(signal).finally(() => {
          this.#unlocking = false;
        });
        return r.ok
          ? [{ type: 'storage-unlocked', dataDir: r.dataDir }]
          : [
              {
                type: 'storage-locked',
                reason: r.reason,
                ...(r.waitingFor !== undefined ? { waitingFor: r.waitingFor } : {}),
              },
            ];
      },
      'load-pairing-state': async (e) => [
        { type: 'pairing-state-loaded', paired: await svc.isPaired(e.dataDir) },
      ],
      'start-pairing': async (e, signal) => {
        await svc.startPairing(e.dataDir, signal, emit, e.reason ?? 'first-boot');
        return undefined;
      },
      'factory-reset': async (e, signal) => {
        await svc.stopPairing();
        await svc.stopServices();
        if (svc.factoryReset) await svc.factoryReset(e.dataDir, signal);
        else log.warn('factory reset: these services have nothing to erase');
        return [{ type: 'factory-reset-done' }];
      },
      'stop-pairing': async () => {
        await svc.stopPairing();
        return undefined;
      },
      'start-services': async (e, signal) => {
        for (const c of opts.config.children) this.children.start(toChild(c));
        await svc.startServices(e.dataDir, signal, emit, this.children);
        return undefined;
      },
      'stop-services': async () => {
        await svc.stopServices();
        return undefined;
      },
      'apply-update': async (e, signal) => {
        const outcome = await svc.applyUpdate(e.version, signal);
        return [{ type: 'update-finished', outcome, version: e.version }];
      },
      'report-status': async (e) => {
        await opts.notifier.status(e.status).catch(() => undefined);
        this.#writeStatus();
        return undefined;
      },
      shutdown: async (e) => {
        this.#exitCode = e.exitCode;
        await opts.notifier.stopping().catch(() => undefined);
        await Promise.allSettled([
          svc.stopPairing(),
          svc.stopServices(),
          this.children.stopAll(3000),
        ]);
        // after the services: nothing may still hold the process open once we return
        await svc.shutdown?.().catch((err: unknown) => {
          log.warn('releasing services at shutdown failed', { err });
        });
        this.#writeStatus();
        await this.#statusWrite;
        return undefined;
      },
    };
    this.executor = new Executor({
      handlers,
      logger: log.child('executor'),
      retry: {
        // one shot: a failed shutdown step must not delay the exit
        shutdown: { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
        'report-status': { attempts: 1, initialDelayMs: 1, maxDelayMs: 1 },
      },
      onState: (state, event) => {
        this.#since = new Date();
        const level = state.name === 'degraded' || state.name === 'failed' ? 'warn' : 'info';
        log[level]('state', { state: state.name, event: event.type, status: describe(state) });
        opts.onState?.(state);
      },
    });
  }

  status(): HubStatus {
    const s = this.executor.state;
    return {
      state: s.name,
      summary: describe(s),
      since: this.#since.toISOString(),
      pid: process.pid,
      children: this.children.status(),
      history: this.executor.history,
      services: this.#opts.services.status?.() ?? {},
    };
  }

  #writeStatus(): void {
    const file = this.#opts.statusFile;
    const body = JSON.stringify(this.status(), null, 2) + '\n';
    // /run is tmpfs: atomic rename is enough, durability is not wanted here.
    this.#statusWrite = this.#statusWrite.then(async () => {
      try {
        await mkdir(dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, body);
        await rename(tmp, file);
      } catch (err) {
        this.#opts.logger.warn('cannot write status file', { error: err });
      }
    });
  }

  /** Run until stopped; resolves with the exit code. */
  async run(): Promise<number> {
    const { notifier, logger } = this.#opts;
    this.#stopWatchdog = notifier.startWatchdog();
    this.executor.dispatch({ type: 'booted' });
    // Keeps the process alive while locked and retries the key sources now and then.
    const retry = setInterval(() => {
      if (this.executor.state.name === 'locked' && !this.#unlocking)
        this.executor.dispatch({ type: 'unlock-retry' });
    }, this.#opts.unlockRetryMs ?? 30_000);
    const refresh = setInterval(() => {
      this.#writeStatus();
    }, this.#opts.statusRefreshMs ?? 30_000);
    await notifier.ready(describe(this.executor.state)).catch((err: unknown) => {
      logger.warn('sd_notify READY failed', { error: err });
    });
    logger.info('hub started', {
      pid: process.pid,
      watchdogMs: notifier.watchdogIntervalMs ?? null,
    });
    await this.executor.done;
    clearInterval(retry);
    clearInterval(refresh);
    this.#stopWatchdog();
    logger.info('hub stopped', { exitCode: this.#exitCode });
    return this.#exitCode;
  }

  /** Request a clean stop; a hard deadline guarantees we exit even if a step hangs. */
  stop(exitCode = 0): void {
    const deadline = this.#opts.shutdownDeadlineMs ?? 9_000;
    const t = setTimeout(() => {
      this.#opts.logger.error('clean shutdown exceeded its deadline; exiting', {
        deadlineMs: deadline,
      });
      process.exit(exitCode || 1);
    }, deadline);
    t.unref();
    // A stop that finished in time must not fire later: a program that stops a hub and goes
    // on (the local run's tests, a restart in one process) would be killed by it.
    void this.executor.done.then(() => {
      clearTimeout(t);
    });
    this.executor.dispatch({ type: 'stop-requested', exitCode });
  }
}

function toChild(c: VigilConfig['children'][number]): ChildDefinition {
  return { name: c.name, command: c.command, args: c.args, ...(c.env ? { env: c.env } : {}) };
}
