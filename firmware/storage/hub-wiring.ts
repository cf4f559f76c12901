/**
 * Storage's part of the hub's production wiring (firmware/supervisor/
 * production-services.ts calls these three):
 *
 *   const sw = new StorageWiring({ paths, fs, logger });
 *   createRealStorage({ ..., phone: sw.phone });            // unlockStorage
 *   await sw.unlocked(storage, result);                       // tells the phone that unlocked it
 *   sw.start({ storage, deviceId, relay, channel, phones });  // startServices: channel + escrow
 *   await sw.stop();                                          // stopServices
 *
 * `start` (re)writes the locked-hub unlock channel file outside the volume and
 * escrows the recovery material to every paired phone, retrying until done.
 */
import { reasonOf } from '../../base/errors.js';
import type { DurableFs } from '../../hw/os/fs.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import type { Logger } from '../../base/logger.js';
import { ConfigEscrowPort, runEscrow } from './escrow.js';
import type { AppSender } from './escrow.js';
import { RelayPhoneUnlock, UnlockChannelStore } from './phone-unlock.js';
import type { Storage, UnlockResult } from './storage.js';

export interface StorageWiringStart {
  readonly storage: Pick<Storage, 'escrow' | 'recoveryMaterial'>;
  readonly deviceId: string;
  /** The hub's relay account (kept inside the volume; copied to the channel file). */
  readonly relay: { readonly url: string; readonly deviceId: string; readonly token: string };
  readonly channel: AppSender;
  /** MLS ids of the paired phones (MlsHub.phones). */
  readonly phones: () => readonly string[];
  readonly retryMs?: number;
}

export class StorageWiring {
  readonly store: UnlockChannelStore;
  readonly phone: RelayPhoneUnlock;
  readonly #log: Logger;
  #run: { ac: AbortController; done: Promise<void> } | undefined;

  constructor(opts: { paths: HostPaths; fs: DurableFs; logger: Logger; pollWaitMs?: number }) {
    this.#log = opts.logger.child('storage');
    this.store = new UnlockChannelStore({ paths: opts.paths, fs: opts.fs });
    this.phone = new RelayPhoneUnlock({
      channel: () => this.store.load(),
      logger: opts.logger,
      ...(opts.pollWaitMs !== undefined ? { pollWaitMs: opts.pollWaitMs } : {}),
    });
  }

  /**
   * After unlockAndMount: a phone whose key opened the volume hears so. Never
   * delays the boot: the status is posted in the background (`confirmed`).
   */
  unlocked(r: UnlockResult): Promise<void> {
    if (r.state !== 'unlocked' || r.source !== 'phone') return Promise.resolve();
    this.confirmed = this.phone.confirmUnlocked().catch((e: unknown) => {
      this.#log.warn('could not confirm the unlock to the phone', { err: reasonOf(e) });
    });
    return Promise.resolve();
  }

  /** The background confirmation started by `unlocked` (tests await it). */
  confirmed: Promise<void> = Promise.resolve();

  /** Set up the unlock channel and start escrow in the background (idempotent). */
  start(s: StorageWiringStart): Promise<void> {
    if (this.#run) return this.#run.done;
    const ac = new AbortController();
    const done = (async () => {
      const m = await s.storage.recoveryMaterial();
      const { channel, created } = await this.store.ensure({
        deviceId: s.deviceId,
        luksUuid: m.luksUuid,
        relay: s.relay,
      });
      if (created) this.#log.info('phone-unlock channel set up', { file: this.store.file });
      const port = new ConfigEscrowPort(s.channel, () =>
        Promise.resolve({
          deviceId: channel.deviceId,
          unlockPublicKey: channel.unlockKey.publicKey,
          signPublicKey: channel.signKey.publicKey,
        }),
      );
      await runEscrow({
        storage: s.storage,
        port,
        phones: s.phones,
        logger: this.#log,
        signal: ac.signal,
        ...(s.retryMs !== undefined ? { retryMs: s.retryMs } : {}),
      });
    })().catch((e: unknown) => {
      this.#log.error('storage escrow wiring failed', { err: reasonOf(e) });
    });
    this.#run = { ac, done };
    return done;
  }

  async stop(): Promise<void> {
    const r = this.#run;
    this.#run = undefined;
    r?.ac.abort();
    await r?.done;
  }
}
