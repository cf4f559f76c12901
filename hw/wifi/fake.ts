/**
 * In-memory Wi-Fi adapters for controller tests (the lowest port: the real
 * adapters are proven against hostapd/wpa_supplicant in the VM scenarios).
 */
import { EventEmitter } from 'node:events';
import type { Hotspot, HotspotConfig, HotspotEvents, StationEvent } from './hotspot.js';
import { HotspotError } from './hotspot.js';
import type { JoinResult, ScanResult, Station, WifiCredentials } from './station.js';
import { WifiJoinError } from './station.js';

export class FakeHotspot extends EventEmitter<HotspotEvents> implements Hotspot {
  active = false;
  config: HotspotConfig | undefined;
  readonly log: string[] = [];
  #stations = new Set<string>();
  /** Make the next start() fail. */
  failNextStart = false;

  start(config: HotspotConfig): Promise<void> {
    if (this.active) return Promise.reject(new HotspotError('EHOTSPOT_STATE', 'already running'));
    if (this.failNextStart) {
      this.failNextStart = false;
      this.log.push('start-failed');
      return Promise.reject(new HotspotError('EHOTSPOT_START', 'simulated start failure'));
    }
    this.active = true;
    this.config = config;
    this.log.push(`start ${config.ssid}`);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    if (this.active) this.log.push('stop');
    this.active = false;
    this.#stations.clear();
    return Promise.resolve();
  }

  stations(): readonly string[] {
    return [...this.#stations];
  }

  /** Simulate hostapd reporting a station. */
  station(ev: StationEvent): void {
    if (ev.type === 'joined') this.#stations.add(ev.mac);
    else this.#stations.delete(ev.mac);
    this.emit('station', ev);
  }
}

export interface FakeNetwork {
  readonly ssid: string;
  readonly passphrase: string;
}

export class FakeStation implements Station {
  connected = false;
  readonly log: string[] = [];
  readonly networks: FakeNetwork[];
  joinedSsid: string | undefined;

  constructor(networks: FakeNetwork[] = []) {
    this.networks = networks;
  }

  scan(): Promise<ScanResult[]> {
    this.log.push('scan');
    return Promise.resolve(
      this.networks.map((n, i) => ({
        bssid: `02:00:00:00:00:${String(i).padStart(2, '0')}`,
        ssid: n.ssid,
        signalDbm: -40,
        freqMhz: 2437,
        rsn: true,
      })),
    );
  }

  join(creds: WifiCredentials): Promise<JoinResult> {
    this.log.push(`join ${creds.ssid}`);
    const n = this.networks.find((x) => x.ssid === creds.ssid);
    if (!n)
      return Promise.reject(
        new WifiJoinError('EWIFI_NOT_FOUND', `no network named "${creds.ssid}" is in range`),
      );
    if (n.passphrase !== creds.passphrase)
      return Promise.reject(
        new WifiJoinError('EWIFI_WRONG_PASSWORD', `the password for "${creds.ssid}" was rejected`),
      );
    this.connected = true;
    this.joinedSsid = creds.ssid;
    return Promise.resolve({ bssid: '02:00:00:00:00:00', address: '192.168.1.50/24' });
  }

  leave(): Promise<void> {
    if (this.connected) this.log.push('leave');
    this.connected = false;
    this.joinedSsid = undefined;
    return Promise.resolve();
  }
}
