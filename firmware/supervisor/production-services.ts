/**
 * Production composition of the hub's services on a real device.
 * (Wired to firmware/storage, firmware/pairing, firmware/media, firmware/uplink
 * and ota/ as those land.)
 */
import type { HostPaths } from '../../hw/os/host-paths.js';
import type { VigilConfig } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import type { HubServices } from './hub.js';

export interface ProductionDeps {
  readonly config: VigilConfig;
  readonly paths: HostPaths;
  readonly logger: Logger;
}

export function createProductionServices(deps: ProductionDeps): Promise<HubServices> {
  const log = deps.logger.child('services');
  const services: HubServices = {
    unlockStorage: () =>
      Promise.resolve({
        ok: false,
        reason: 'no storage backend configured',
        waitingFor: 'storage integration',
      }),
    isPaired: () => Promise.resolve(false),
    startPairing: () => Promise.resolve(),
    stopPairing: () => Promise.resolve(),
    startServices: () => Promise.resolve(),
    stopServices: () => Promise.resolve(),
    applyUpdate: () => Promise.resolve('rolled-back'),
  };
  log.debug('production services composed');
  return Promise.resolve(services);
}
