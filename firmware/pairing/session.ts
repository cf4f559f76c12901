/**
 * One pairing connection's content, hub side: the frame server is the
 * transport; this is what the frames mean.
 *
 *   kind pairing -> decodeFrame (zod) -> PairingResponder (MLS handshake)
 *   kind config  -> MlsHub.handleConfig (authenticated by the config group):
 *                   app "wifi-credentials" -> scan for the network while the
 *                   hotspot is still up -> status to the phone -> handoff
 *   kind status  -> never from a phone
 *
 * A phone that paired earlier may reconnect and send config frames only (to
 * retry the Wi-Fi step after a wrong password).
 */
import { reasonOf } from '../../base/errors.js';
import { decodeFrame, encodeFrame } from '../../protocol/e2ee-frames.js';
import type { PairingFrame } from '../../protocol/e2ee-frames.js';
import {
  StatusFrame,
  WIFI_CREDENTIALS_TOPIC,
  decodeWifiCredentials,
} from '../../protocol/pairing-transport.js';
import type { WifiCredentialsBody, WireFrame } from '../../protocol/pairing-transport.js';
import type { Logger } from '../../base/logger.js';
import { SILENT } from '../../base/logger.js';
import type { ConfigOutcome } from '../mls/hub.js';

export interface SessionEnd {
  readonly ok: boolean;
  readonly code: string;
  readonly message: string;
}

export type SessionEvent =
  | { readonly type: 'paired'; readonly phoneId: string }
  | {
      readonly type: 'credentials';
      readonly phoneId: string;
      readonly credentials: WifiCredentialsBody;
    };

export interface SessionStep {
  readonly replies: readonly WireFrame[];
  readonly events?: readonly SessionEvent[];
  /** Set when the connection should close after the replies are sent. */
  readonly end?: SessionEnd;
}

/** What the frame server drives: one per connection. */
export interface PairingSession {
  /** Never throws: every problem becomes a reply and/or an end. */
  handle(frame: WireFrame): Promise<SessionStep>;
  /** The connection died or timed out: wipe anything half-made. */
  abort(reason: string): void;
  /** Did this connection achieve something (a pairing or accepted credentials)? */
  readonly succeeded: boolean;
}

/** The part of PairingResponder the session needs (firmware/mls/pairing-responder.ts). */
export interface Responder {
  handle(frame: PairingFrame): Promise<PairingFrame[]>;
  abort(reason?: string): void;
  readonly phase: string;
  readonly failure: { readonly code: string; readonly message: string } | undefined;
}

export interface HubPairingSessionDeps {
  readonly responder: Responder;
  readonly handleConfig: (bytes: Uint8Array) => Promise<ConfigOutcome>;
  /** Is the home network in range? (scan while the hotspot is still up) */
  readonly networkInRange: (ssid: string) => Promise<boolean>;
  readonly logger?: Logger;
}

function codeOf(e: unknown, fallback: string): string {
  const c = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof c === 'string' ? c : fallback;
}

function status(s: StatusFrame): WireFrame {
  return { kind: 'status', payload: Buffer.from(JSON.stringify(StatusFrame.parse(s)), 'utf8') };
}

function fail(code: string, message: string): SessionStep {
  return {
    replies: [status({ t: 'error', code: code.slice(0, 64), message: message.slice(0, 500) })],
    end: { ok: false, code, message },
  };
}

export class HubPairingSession implements PairingSession {
  readonly #d: HubPairingSessionDeps;
  readonly #log: Logger;
  #paired = false;
  #credentialsAccepted = false;
  #ended = false;

  constructor(deps: HubPairingSessionDeps) {
    this.#d = deps;
    this.#log = deps.logger ?? SILENT;
  }

  get succeeded(): boolean {
    return this.#paired || this.#credentialsAccepted;
  }

  abort(reason: string): void {
    this.#d.responder.abort(reason);
  }

  async handle(frame: WireFrame): Promise<SessionStep> {
    if (this.#ended) return fail('EFRAME_UNEXPECTED', 'session already ended');
    try {
      const step = await this.#handle(frame);
      if (step.end) this.#ended = true;
      return step;
    } catch (e) {
      this.#ended = true;
      this.#d.responder.abort('internal error');
      return fail(codeOf(e, 'EPAIRING_FAILED'), reasonOf(e));
    }
  }

  async #handle(frame: WireFrame): Promise<SessionStep> {
    switch (frame.kind) {
      case 'status':
        return fail('EFRAME_UNEXPECTED', 'status frames only go from the hub to the phone');
      case 'pairing': {
        const d = decodeFrame(frame.payload);
        if (!d.ok) {
          this.#d.responder.abort('malformed frame');
          return fail('EFRAME_PAYLOAD', d.reason);
        }
        const out = await this.#d.responder.handle(d.value);
        const replies: WireFrame[] = out.map((f) => ({
          kind: 'pairing' as const,
          payload: encodeFrame(f),
        }));
        const failure = this.#d.responder.failure;
        if (failure)
          return { replies, end: { ok: false, code: failure.code, message: failure.message } };
        if (this.#d.responder.phase === 'done' && !this.#paired) {
          this.#paired = true;
          const paired = out.find((f) => f.t === 'paired');
          const phoneId = paired?.t === 'paired' ? paired.phoneId : '';
          this.#log.info('phone paired', { phoneId });
          return { replies, events: [{ type: 'paired', phoneId }] };
        }
        return { replies };
      }
      case 'config':
        return this.#config(frame.payload);
    }
  }

  async #config(payload: Uint8Array): Promise<SessionStep> {
    let outcome: ConfigOutcome;
    try {
      outcome = await this.#d.handleConfig(payload);
    } catch (e) {
      return fail(codeOf(e, 'ECONFIG_REJECTED'), `config message rejected: ${reasonOf(e)}`);
    }
    const replies: WireFrame[] = outcome.replies.map((r) => ({
      kind: 'config' as const,
      payload: r,
    }));
    const m = outcome.message;
    if (m.t !== 'app' || m.topic !== WIFI_CREDENTIALS_TOPIC) return { replies };
    const creds = decodeWifiCredentials(Buffer.from(m.body, 'base64url'));
    if (!creds.ok) {
      // the phone may correct and resend: keep the connection
      const code = creds.reason.startsWith('relay') ? 'ERELAY_URL' : 'EWIFI_CREDENTIALS';
      replies.push(status({ t: 'error', code, message: creds.reason }));
      return { replies };
    }
    const { ssid } = creds.value;
    let found: boolean;
    try {
      found = await this.#d.networkInRange(ssid);
    } catch (e) {
      // Not being able to scan is not "not in range": the join itself tells (a failed join
      // brings the hotspot back and the phone can send other credentials).
      this.#log.warn('scan failed; trying the network anyway', { error: e });
      found = true;
    }
    if (!found) {
      replies.push(
        status({
          t: 'handoff',
          state: 'network-not-found',
          message: `the hub cannot see a network named "${ssid}"; check the name and that the hub is in range`,
        }),
      );
      return { replies };
    }
    this.#credentialsAccepted = true;
    replies.push(
      status({
        t: 'handoff',
        state: 'leaving-hotspot',
        message: `joining "${ssid}"; the pairing hotspot goes down now`,
      }),
    );
    return {
      replies,
      events: [{ type: 'credentials', phoneId: outcome.phoneId, credentials: creds.value }],
      end: { ok: true, code: 'OK', message: 'credentials accepted' },
    };
  }
}
