/**
 * The interoperability target of the local run (`vigil dev --pairing-port`):
 * the production pairing frame server (firmware/pairing/server.ts with the
 * real HubPairingSession and PairingResponder) on loopback, in front of the
 * local run's real MLS hub. A client written from docs/protocol.md and
 * docs/pairing.md pairs with it exactly as with a card's hotspot, then meets
 * the hub at the local relay with its pairing token and receives items.
 *
 * What differs from a card, because a laptop has no hotspot: nothing to join
 * first (connect to the port), every home network name is "in range", the hub
 * does not leave for it; it offers the relay rendezvous for the pairing token
 * before it answers `leaving-hotspot` (a client may claim at once), and a
 * relay override in the credentials is logged and ignored (the run's relay
 * stays). The window follows the production rules (one attempt at a time, 20
 * failed attempts close it) except that it reopens when its 15 minutes are up.
 */
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { MlsHub } from '../firmware/mls/hub.js';
import { PairingResponder } from '../firmware/mls/pairing-responder.js';
import { PairingServer } from '../firmware/pairing/server.js';
import { HubPairingSession } from '../firmware/pairing/session.js';
import { PairingWindow } from '../firmware/pairing/window.js';
import type { ExternalPsk } from '../protocol/mls-profile.js';
import { WIFI_CREDENTIALS_TOPIC, decodeWifiCredentials } from '../protocol/pairing-transport.js';

export interface PairingPortOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly hub: MlsHub;
  /** The device PSK (from the label's secret); invites work too (MlsHub keeps them). */
  readonly devicePsk: ExternalPsk;
  /** The hub's side of the relay meeting: offer the rendezvous for this pairing token. */
  readonly offerRendezvous: (pairingToken: string) => Promise<void>;
  readonly logger: Logger;
}

export interface PairingPort {
  readonly host: string;
  readonly port: number;
  readonly server: PairingServer;
  close(): Promise<void>;
}

export async function startPairingPort(o: PairingPortOptions): Promise<PairingPort> {
  const log = o.logger;
  const window = new PairingWindow();
  window.on('closed', (why) => {
    if (why === 'timeout') window.open('button');
    else if (why === 'failures')
      log.warn('pairing window closed after too many failed attempts; restart the run to reopen');
  });
  window.open('button');
  const server = new PairingServer({
    window,
    logger: log,
    newSession: () =>
      new HubPairingSession({
        responder: new PairingResponder({ hub: o.hub, devicePsk: o.devicePsk }),
        handleConfig: async (bytes) => {
          const outcome = await o.hub.handleConfig(bytes);
          const m = outcome.message;
          if (m.t === 'app' && m.topic === WIFI_CREDENTIALS_TOPIC) {
            // decoded again by the session, which answers a bad body; here only a good one counts
            const creds = decodeWifiCredentials(Buffer.from(m.body, 'base64url'));
            if (creds.ok) {
              if (creds.value.relayUrl !== undefined)
                log.warn('development: the relay override is ignored; the run keeps its relay', {
                  relayUrl: creds.value.relayUrl,
                });
              try {
                await o.offerRendezvous(creds.value.pairingToken);
              } catch (e) {
                log.warn('could not offer the relay rendezvous', { error: reasonOf(e) });
              }
            }
          }
          return outcome;
        },
        // no hotspot and no Wi-Fi to join on a laptop: every network is "in range"
        networkInRange: () => Promise.resolve(true),
        logger: log,
      }),
  });
  const addr = await server.listen(o.host, o.port);
  return {
    host: o.host,
    port: addr.port,
    server,
    async close(): Promise<void> {
      window.cancel();
      await server.close();
    },
  };
}
