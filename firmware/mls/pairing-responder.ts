/**
 * Hub side of the pairing handshake (transport independent; the pairing
 * server carries the frames). One responder per pairing attempt:
 *
 *   phone                         hub
 *   hello(versions, time, id, sigkey, pskId) ->
 *                                 <- hello-ack(version, time, deviceId, hub sigkey, groups)
 *   for each group in GROUP_KINDS:
 *   key-package(group, kp)     ->
 *                                 <- welcome(group, groupId, Welcome)   (commit: Add + external PSK)
 *   confirm(mac)               ->    (mac proves the phone joined all groups, i.e. holds the PSK)
 *                                 <- paired(phoneId, admin)             (state made durable first)
 *
 * Nothing is written before `confirm` verifies; any error (or `abort()`)
 * zeroes the half-made groups and leaves no trace.
 */
import type { ClientState } from 'ts-mls';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { CodedError, reasonOf } from '../../base/errors.js';
import {
  SUPPORTED_VERSIONS,
  b64,
  errorFrame,
  unb64,
  type ConfigMessage,
  type PairingErrorCode,
  type PairingFrame,
} from '../../protocol/e2ee-frames.js';
import {
  GROUP_KINDS,
  PinnedAuthService,
  checkKeyPackageLifetime,
  clientConfig,
  decodeKeyPackageMessage,
  encodeMessage,
  externalPskProposal,
  forgetPastEpochs,
  newKeyPackage,
  pairingConfirmMac,
  phoneIdentity,
  pskIndexOf,
  zeroAll,
  type ExternalPsk,
  type GroupKind,
  type PinnedCredential,
} from '../../protocol/mls-profile.js';
import type { ConfigOutcome, MlsHub } from './hub.js';

export type { PairingErrorCode };

/** The hub end's pairing failure: any code of the protocol's `error` frame. */
export class PairingError extends CodedError<PairingErrorCode> {}

/** The config group of a freshly paired phone (e.g. to receive Wi-Fi credentials). */
export interface ConfigChannel {
  readonly phoneId: string;
  /** Handle one MLS message from the phone's config group. */
  receive(bytes: Uint8Array): Promise<ConfigOutcome>;
  /** Seal a config message for the phone. */
  send(msg: ConfigMessage): Promise<Uint8Array>;
}

export interface PairedPhone {
  readonly phoneId: string;
  readonly admin: boolean;
  readonly credential: PinnedCredential;
  readonly config: ConfigChannel;
}

export interface PairingResponderOptions {
  readonly hub: MlsHub;
  /** The device's external PSK (protocol/identity.ts: mlsPsk + mlsPskId). */
  readonly devicePsk: ExternalPsk;
  /** The phone's wall clock (the Pi has no RTC): the caller may set the system clock. */
  readonly onTimeSync?: (phoneTimeMs: number) => void;
  readonly onPaired?: (p: PairedPhone) => void | Promise<void>;
}

type Phase = 'hello' | 'groups' | 'confirm' | 'done' | 'failed';

export class PairingResponder {
  readonly #o: PairingResponderOptions;
  #phase: Phase = 'hello';
  #phoneId = '';
  #cred: PinnedCredential | undefined;
  #psk: ExternalPsk | undefined;
  #invite = false;
  #phoneTime = 0;
  #groups = new Map<GroupKind, ClientState>();
  #failure: PairingError | undefined;

  constructor(o: PairingResponderOptions) {
    this.#o = o;
  }

  get phase(): Phase {
    return this.#phase;
  }
  /** Why the attempt failed (for the pairing window's failure counter). */
  get failure(): PairingError | undefined {
    return this.#failure;
  }

  /** Handle one frame from the phone; returns the frames to send back. Never throws. */
  async handle(frame: PairingFrame): Promise<PairingFrame[]> {
    try {
      return await this.#handle(frame);
    } catch (e) {
      const err =
        e instanceof PairingError
          ? e
          : new PairingError('EPAIRING_FAILED', `pairing failed: ${reasonOf(e)}`, { cause: e });
      this.#fail(err);
      return [errorFrame(err.code, err.message)];
    }
  }

  /** Abort (timeout, disconnect): wipe everything half-made. */
  abort(reason = 'aborted'): void {
    if (this.#phase === 'done' || this.#phase === 'failed') return;
    this.#fail(new PairingError('EABORTED', reason));
  }

  #fail(err: PairingError): void {
    this.#failure ??= err;
    this.#phase = 'failed';
    this.#wipe();
  }

  #wipe(): void {
    const p = this.#o.hub.p;
    for (const st of this.#groups.values()) {
      forgetPastEpochs(p, st);
      // (not signaturePrivateKey: that is the hub's long-term key, shared)
      zeroAll(p, [
        st.keySchedule.exporterSecret,
        st.keySchedule.initSecret,
        st.keySchedule.senderDataSecret,
      ]);
    }
    this.#groups.clear();
  }

  async #handle(f: PairingFrame): Promise<PairingFrame[]> {
    const hub = this.#o.hub;
    const p = hub.p;
    if (f.t === 'error') {
      throw new PairingError('EPEER_ABORTED', `phone aborted pairing: ${f.code}: ${f.message}`);
    }
    switch (this.#phase) {
      case 'done':
      case 'failed':
        throw new PairingError('EUNEXPECTED_FRAME', `pairing already ${this.#phase}`);
      case 'hello': {
        if (f.t !== 'hello')
          throw new PairingError('EUNEXPECTED_FRAME', `expected hello, got ${f.t}`);
        const version = Math.max(...f.versions.filter((v) => SUPPORTED_VERSIONS.includes(v)), -1);
        if (version < 0)
          throw new PairingError(
            'EVERSION',
            `no common protocol version (phone: ${f.versions.join(',')}; hub: ${SUPPORTED_VERSIONS.join(',')})`,
          );
        const pskId = unb64(f.pskId);
        const dev = this.#o.devicePsk;
        if (pskId.length === dev.id.length && timingSafeEqual(pskId, dev.id)) {
          this.#psk = dev;
        } else {
          const inv = hub.findInvite(pskId);
          if (inv === undefined)
            throw new PairingError('EPSK_UNKNOWN', 'unknown or expired pairing PSK id');
          this.#psk = { id: unb64(inv.pskId), secret: unb64(inv.psk) };
          this.#invite = true;
        }
        if (hub.hasPhone(f.phoneId))
          throw new PairingError('EPHONE_EXISTS', `phone ${f.phoneId} is already paired`);
        this.#phoneId = f.phoneId;
        this.#phoneTime = f.phoneTime;
        this.#cred = {
          identity: phoneIdentity(f.phoneId),
          signaturePublicKey: unb64(f.signaturePublicKey),
        };
        this.#o.onTimeSync?.(f.phoneTime);
        this.#phase = 'groups';
        return [
          {
            t: 'hello-ack',
            version,
            hubTime: hub.now(),
            deviceId: hub.deviceId,
            signaturePublicKey: b64(hub.signing.signaturePublicKey),
            groups: [...GROUP_KINDS],
          },
        ];
      }
      case 'groups': {
        if (f.t !== 'key-package')
          throw new PairingError('EUNEXPECTED_FRAME', `expected key-package, got ${f.t}`);
        const expected = GROUP_KINDS[this.#groups.size] as GroupKind;
        if (f.group !== expected)
          throw new PairingError(
            'EUNEXPECTED_FRAME',
            `expected the ${expected} key package, got ${f.group}`,
          );
        const kp = decodeKeyPackageMessage(p, unb64(f.keyPackage));
        if (kp === undefined)
          throw new PairingError('EKEY_PACKAGE_INVALID', `${f.group}: key package does not decode`);
        const cred = this.#cred as PinnedCredential;
        const c = kp.leafNode.credential;
        if (
          c.credentialType !== 'basic' ||
          !Buffer.from(c.identity).equals(Buffer.from(cred.identity)) ||
          !Buffer.from(kp.leafNode.signaturePublicKey).equals(Buffer.from(cred.signaturePublicKey))
        ) {
          throw new PairingError(
            'EFOREIGN_KEY_PACKAGE',
            `${f.group}: key package is not from the phone that said hello`,
          );
        }
        const lifetimeProblem = checkKeyPackageLifetime(
          kp.leafNode.lifetime,
          hub.now(),
          this.#phoneTime,
        );
        if (lifetimeProblem !== undefined)
          throw new PairingError(
            'EKEY_PACKAGE_LIFETIME',
            `${f.group}: key package lifetime rejected: ${lifetimeProblem}`,
          );
        const auth = new PinnedAuthService([hub.signing, cred]);
        const cfg = clientConfig(p.mls, auth);
        const hkp = await newKeyPackage(p, hub.signing, hub.now(), this.#phoneTime);
        let st = await p.mls.createGroup(
          randomBytes(16),
          hkp.publicPackage,
          hkp.privatePackage,
          [],
          p.cs,
          cfg,
        );
        const psk = this.#psk as ExternalPsk;
        let r;
        try {
          r = await p.mls.createCommit(
            { state: st, cipherSuite: p.cs, pskIndex: pskIndexOf(p, st, [psk]) },
            {
              extraProposals: [
                { proposalType: 'add', add: { keyPackage: kp } },
                externalPskProposal(psk.id),
              ],
              ratchetTreeExtension: true,
            },
          );
        } catch (e) {
          const msg = reasonOf(e);
          if (/credential/i.test(msg))
            throw new PairingError('EFOREIGN_KEY_PACKAGE', `${f.group}: ${msg}`, { cause: e });
          throw new PairingError(
            'EKEY_PACKAGE_INVALID',
            `${f.group}: key package rejected: ${msg}`,
            { cause: e },
          );
        }
        zeroAll(p, r.consumed);
        if (r.welcome === undefined)
          throw new PairingError('EPAIRING_FAILED', 'commit produced no Welcome');
        st = forgetPastEpochs(p, r.newState);
        this.#groups.set(f.group, st);
        if (this.#groups.size === GROUP_KINDS.length) this.#phase = 'confirm';
        return [
          {
            t: 'welcome',
            group: f.group,
            groupId: b64(st.groupContext.groupId),
            welcome: b64(
              encodeMessage(p, { version: 'mls10', wireformat: 'mls_welcome', welcome: r.welcome }),
            ),
          },
        ];
      }
      case 'confirm': {
        if (f.t !== 'confirm')
          throw new PairingError('EUNEXPECTED_FRAME', `expected confirm, got ${f.t}`);
        const states = GROUP_KINDS.map((k) => this.#groups.get(k) as ClientState);
        const want = await pairingConfirmMac(p, states, this.#phoneId);
        const got = unb64(f.mac);
        if (got.length !== want.length || !timingSafeEqual(got, want)) {
          throw new PairingError(
            'EPSK_MISMATCH',
            'key confirmation failed: the phone could not join (wrong pairing secret?)',
          );
        }
        const cred = this.#cred as PinnedCredential;
        const phoneId = this.#phoneId;
        const admin = !this.#invite;
        await hub.exclusive(async () => {
          if (hub.hasPhone(phoneId))
            throw new PairingError('EPHONE_EXISTS', `phone ${phoneId} is already paired`);
          const inviteId = this.#invite ? (this.#psk as ExternalPsk).id : undefined;
          await hub.commitPairing({
            phoneId,
            credential: cred,
            groups: this.#groups,
            admin,
            ...(inviteId === undefined ? {} : { inviteId }),
          });
        });
        this.#groups.clear(); // now owned by the hub
        this.#phase = 'done';
        const paired: PairedPhone = {
          phoneId,
          admin,
          credential: cred,
          config: {
            phoneId,
            receive: (b) => hub.handleConfig(b),
            send: (m) => hub.sealFor(phoneId, m),
          },
        };
        await this.#o.onPaired?.(paired);
        return [{ t: 'paired', phoneId, admin }];
      }
    }
  }
}
