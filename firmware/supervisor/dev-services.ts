/**
 * Development-mode services: simulated hardware for running the hub on a
 * laptop or in CI. Storage is a plain directory (no LUKS: logged loudly as
 * insecure), and pairing completes when a paired marker appears (the local
 * `vigil dev` run writes it after pairing the companion in-process). Production
 * never uses this module: cli.ts only selects it for `mode: "development"`.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../base/logger.js';
import type { HubServices, UnlockResult } from './hub.js';
import { sleep } from './executor.js';

export interface DevServicesOptions {
  readonly dataDir: string;
  readonly logger: Logger;
  /** Pair automatically this long after the window opens (development convenience). */
  readonly autoPairAfterMs?: number;
}

export const PAIRED_MARKER = 'paired.json';

export class DevServices implements HubServices {
  readonly #o: DevServicesOptions;
  #pairing: AbortController | undefined;
  #services = 'stopped';

  constructor(opts: DevServicesOptions) {
    this.#o = opts;
  }

  async unlockStorage(): Promise<UnlockResult> {
    this.#o.logger.warn(
      'DEVELOPMENT MODE: storage is an unencrypted directory; never use this on a device',
      {
        dataDir: this.#o.dataDir,
      },
    );
    await mkdir(this.#o.dataDir, { recursive: true, mode: 0o700 });
    return { ok: true, dataDir: this.#o.dataDir };
  }

  async isPaired(dataDir: string): Promise<boolean> {
    try {
      await readFile(join(dataDir, PAIRED_MARKER));
      return true;
    } catch {
      return false;
    }
  }

  async startPairing(
    dataDir: string,
    signal: AbortSignal,
    emit: (e: { type: 'paired' }) => void,
  ): Promise<void> {
    const ctrl = new AbortController();
    this.#pairing = ctrl;
    const both = AbortSignal.any([signal, ctrl.signal]);
    const after = this.#o.autoPairAfterMs;
    this.#o.logger.info('pairing window open (development: simulated hotspot)', {
      autoPairAfterMs: after ?? null,
    });
    void (async () => {
      try {
        if (after !== undefined) {
          await sleep(after, both);
          await writeFile(
            join(dataDir, PAIRED_MARKER),
            JSON.stringify({ pairedAt: new Date().toISOString(), dev: true }) + '\n',
          );
        }
        for (;;) {
          if (await this.isPaired(dataDir)) {
            emit({ type: 'paired' });
            return;
          }
          await sleep(250, both);
        }
      } catch {
        /* aborted: the window closed */
      }
    })();
    return Promise.resolve();
  }

  stopPairing(): Promise<void> {
    this.#pairing?.abort();
    this.#pairing = undefined;
    return Promise.resolve();
  }

  startServices(): Promise<void> {
    this.#services = 'running';
    this.#o.logger.info('services started (development: no camera attached to the bare hub)');
    return Promise.resolve();
  }

  stopServices(): Promise<void> {
    this.#services = 'stopped';
    return Promise.resolve();
  }

  applyUpdate(): Promise<'committed' | 'rolled-back'> {
    return Promise.resolve('rolled-back');
  }

  status(): Record<string, unknown> {
    return { mode: 'development', services: this.#services };
  }
}
