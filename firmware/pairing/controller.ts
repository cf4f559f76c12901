/**
 * Pairing orchestration on the hub: the window, the hotspot, the frame server
 * and the Wi-Fi handoff.
 *
 *   open(reason) -> window opens, hotspot up (SSID/passphrase from the label's
 *                   secret), frame server on the hotspot address
 *   phone pairs (MLS) and sends home Wi-Fi credentials (config group); the
 *   session checks the network is in range while the AP is still up
 *   handoff      -> frame server and hotspot down, join the home network;
 *                   on failure: leave, hotspot + window back up (the paired
 *                   phone reconnects and sends corrected credentials);
 *                   on success: save the credentials, meet the phone at the
 *                   relay with its pairing token
 *   window closes (15 min / 20 failures) -> server and hotspot down
 */
import { EventEmitter } from 'node:events';
import { reasonOf } from '../../base/errors.js';
import type { WifiCredentialsBody } from '../../protocol/pairing-transport.js';
import { deriveIdentity } from '../../protocol/identity.js';
import type { DeviceIdentity } from '../../protocol/identity.js';
import type { Hotspot } from '../../hw/wifi/hotspot.js';
import type { Station } from '../../hw/wifi/station.js';
import type { Logger } from '../../base/logger.js';
import { SILENT } from '../../base/logger.js';
import type { ConfigOutcome } from '../mls/hub.js';
import { DEFAULT_PORT, PairingServer } from './server.js';
import { HubPairingSession } from './session.js';
import type { Responder } from './session.js';
import type { CloseReason, OpenReason } from './window.js';
import { PairingWindow } from './window.js';

export interface HotspotSettings {
  readonly interface: string;
  readonly countryCode: string;
  readonly channel?: number;
  readonly address: string;
  readonly prefixLength: number;
  readonly dhcpStart: string;
  readonly dhcpEnd: string;
  readonly port?: number;
}

export const DEFAULT_HOTSPOT: Omit<HotspotSettings, 'interface' | 'countryCode'> = {
  address: '10.42.0.1',
  prefixLength: 24,
  dhcpStart: '10.42.0.10',
  dhcpEnd: '10.42.0.50',
  port: DEFAULT_PORT,
};

export type HandoffOutcome =
  | {
      readonly ok: true;
      readonly ssid: string;
      readonly address: string | undefined;
      /** `retrying`: the relay did not answer; the meeting goes on in the background. */
      readonly relay: 'met' | 'retrying' | 'failed';
    }
  | { readonly ok: false; readonly ssid: string; readonly code: string; readonly message: string };

export interface PairingControllerEvents {
  /** For the status LED and the supervisor. */
  state: ['idle' | 'pairing' | 'handoff' | 'paired' | 'error'];
  handoff: [HandoffOutcome];
  closed: [CloseReason];
}

export interface PairingControllerDeps {
  readonly identity: DeviceIdentity;
  readonly hotspot: Hotspot;
  readonly station: Station;
  readonly settings: HotspotSettings;
  /** A fresh PairingResponder per connection (firmware/mls/pairing-responder.ts). */
  readonly newResponder: () => Responder;
  readonly handleConfig: (bytes: Uint8Array) => Promise<ConfigOutcome>;
  /**
   * Relay rendezvous (firmware/pairing/rendezvous.ts): resolves after the first attempt;
   * `retrying` when it goes on in the background.
   */
  readonly meetAtRelay: (token: string) => Promise<'met' | 'retrying'>;
  /**
   * Persist the home network (inside the LUKS volume) for the next boot, and the
   * relay the phone chose, when it chose one (used from then on, meetAtRelay included).
   */
  readonly saveCredentials?: (c: {
    ssid: string;
    passphrase: string;
    relay?: { url: string; enrollToken?: string };
  }) => Promise<void>;
  readonly window?: PairingWindow;
  readonly logger?: Logger;
}

export class PairingController extends EventEmitter<PairingControllerEvents> {
  readonly #d: PairingControllerDeps;
  readonly #log: Logger;
  readonly window: PairingWindow;
  #server: PairingServer | undefined;
  #pending: WifiCredentialsBody | undefined;
  #handoff: Promise<HandoffOutcome> | undefined;
  #port: number | undefined;

  constructor(deps: PairingControllerDeps) {
    super();
    this.#d = deps;
    this.#log = (deps.logger ?? SILENT).child('pairing');
    this.window = deps.window ?? new PairingWindow();
    this.window.on('closed', (why) => {
      this.emit('closed', why);
      if (why !== 'paired') void this.#down().then(() => this.emit('state', 'idle'));
    });
  }

  /** The frame server's port while serving (the settings may ask for 0 = any). */
  get port(): number | undefined {
    return this.#port;
  }

  get serving(): boolean {
    return this.#server !== undefined;
  }

  /** Open the pairing window (first boot, button, factory reset). */
  async open(reason: OpenReason): Promise<void> {
    if (this.#handoff) await this.#handoff;
    this.window.open(reason);
    this.#log.info('pairing window open', { reason });
    await this.#up();
    this.emit('state', 'pairing');
  }

  async #up(): Promise<void> {
    const s = this.#d.settings;
    const { ssid, wpaPassphrase } = deriveIdentity(
      this.#d.identity.secret,
      this.#d.identity.deviceId,
    );
    await this.#d.station.leave();
    if (!this.#d.hotspot.active) {
      await this.#d.hotspot.start({
        interface: s.interface,
        ssid,
        passphrase: wpaPassphrase,
        countryCode: s.countryCode,
        address: s.address,
        prefixLength: s.prefixLength,
        dhcpStart: s.dhcpStart,
        dhcpEnd: s.dhcpEnd,
        ...(s.channel !== undefined ? { channel: s.channel } : {}),
      });
    }
    if (!this.#server) {
      const server = new PairingServer({
        window: this.window,
        logger: this.#log,
        newSession: () =>
          new HubPairingSession({
            responder: this.#d.newResponder(),
            handleConfig: this.#d.handleConfig,
            networkInRange: async (wanted) =>
              (await this.#d.station.scan()).some((n) => n.ssid === wanted),
            logger: this.#log,
          }),
      });
      server.on('session', (e) => {
        if (e.type === 'credentials') this.#pending = e.credentials;
      });
      server.on('attempt', (r) => {
        const creds = this.#pending;
        this.#pending = undefined;
        if (r.succeeded && creds)
          this.#handoff = this.#runHandoff(creds).finally(() => (this.#handoff = undefined));
      });
      this.#port = (await server.listen(s.address, s.port ?? DEFAULT_PORT)).port;
      this.#server = server;
    }
  }

  async #down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#port = undefined;
    await server?.close();
    await this.#d.hotspot.stop();
  }

  /** Resolves with the outcome of a handoff in progress (tests, supervisor). */
  async settled(): Promise<HandoffOutcome | undefined> {
    return this.#handoff;
  }

  async #runHandoff(creds: WifiCredentialsBody): Promise<HandoffOutcome> {
    this.emit('state', 'handoff');
    this.window.paired();
    const { ssid, passphrase } = creds;
    await this.#down();
    let outcome: HandoffOutcome;
    try {
      const joined = await this.#d.station.join({ ssid, passphrase });
      const chosenRelay =
        creds.relayUrl === undefined
          ? undefined
          : {
              url: creds.relayUrl,
              ...(creds.relayEnrollToken !== undefined
                ? { enrollToken: creds.relayEnrollToken }
                : {}),
            };
      await this.#d.saveCredentials?.({
        ssid,
        passphrase,
        ...(chosenRelay ? { relay: chosenRelay } : {}),
      });
      let relay: 'met' | 'retrying' | 'failed' = 'met';
      try {
        if ((await this.#d.meetAtRelay(creds.pairingToken)) === 'retrying') {
          relay = 'retrying';
          this.#log.warn('relay rendezvous failed for now; retrying in the background');
        }
      } catch (e) {
        relay = 'failed';
        this.#log.warn('relay rendezvous failed', { error: e });
      }
      outcome = { ok: true, ssid, address: joined.address, relay };
      this.#log.info('joined the home network; hotspot down', { ssid });
      this.emit('state', 'paired');
    } catch (e) {
      const code =
        typeof (e as { code?: unknown }).code === 'string'
          ? (e as { code: string }).code
          : 'EWIFI_JOIN';
      outcome = { ok: false, ssid, code, message: reasonOf(e) };
      this.#log.warn('could not join the home network; back to the hotspot', { ssid, code });
      await this.#d.station.leave();
      try {
        this.window.open('handoff-failed');
        await this.#up();
        this.emit('state', 'pairing');
      } catch (e2) {
        this.#log.error('hotspot did not come back', { error: e2 });
        this.emit('state', 'error');
      }
    }
    this.emit('handoff', outcome);
    return outcome;
  }

  /** Close everything (shutdown, or the supervisor leaving pairing). */
  async close(): Promise<void> {
    this.window.cancel();
    await this.#handoff;
    await this.#down();
  }
}
