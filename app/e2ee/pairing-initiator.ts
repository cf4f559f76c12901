/**
 * Phone side of the pairing handshake (see firmware's PairingResponder for the
 * sequence; docs/protocol.md for the frames). Transport independent:
 *
 *   const ini = new PairingInitiator({...});
 *   let out = [await ini.start()];
 *   while (!ini.finished) out = await ini.handle(await transport.exchange(out));
 *   const phone = ini.phone; // E2eePhone, durable
 *
 * Nothing is persisted until the hub said `paired`; a failure or abort leaves
 * no state (groups are written first and phone.json last, and `E2eePhone.open`
 * wipes groups without a phone.json).
 */
import type { ClientState, KeyPackage, PrivateKeyPackage } from 'ts-mls';
import { randomBytes } from 'node:crypto';
import {
  b64,
  errorFrame,
  unb64,
  type PairingErrorCode,
  type PairingFrame,
} from '../../protocol/e2ee-frames.js';
import { CodedError, reasonOf } from '../../base/errors.js';
import {
  E2EE_PROTOCOL_VERSION,
  GROUP_KINDS,
  LazyMlsProfile,
  PinnedAuthService,
  checkKeyPackageLifetime,
  clientConfig,
  decodeMessage,
  encodeKeyPackageMessage,
  forgetPastEpochs,
  hubIdentity,
  leafIndexOf,
  newKeyPackage,
  type LeafCapabilityOptions,
  newSigningIdentity,
  pairingConfirmMac,
  phoneIdentity,
  pskIndexOf,
  type ExternalPsk,
  type GroupKind,
  type MlsProfile,
  type SigningIdentity,
} from '../../protocol/mls-profile.js';
import { E2eePhone, type PhoneFile, type PhoneFs } from './phone.js';

/** The codes of the protocol's `error` frame that the phone end raises itself. */
export type InitiatorErrorCode = Extract<
  PairingErrorCode,
  | 'EVERSION'
  | 'EPSK_MISMATCH'
  | 'EKEY_PACKAGE_LIFETIME'
  | 'EUNEXPECTED_FRAME'
  | 'EPEER_ABORTED'
  | 'EABORTED'
  | 'EPAIRING_FAILED'
>;

export class InitiatorError extends CodedError<InitiatorErrorCode> {}

export interface PairingInitiatorOptions {
  readonly dir: string;
  readonly fs: PhoneFs;
  readonly profile: MlsProfile | LazyMlsProfile;
  /** The PSK from the QR label (via HKDF) or from an admin's invite. */
  readonly psk: ExternalPsk;
  readonly now?: () => number;
  /** Versions this client speaks (tests use it to force a mismatch). */
  readonly versions?: readonly number[];
  /** Leaf capabilities as a companion before a feature had them (tests of the hub's fallback). */
  readonly leaf?: LeafCapabilityOptions;
}

type Phase = 'new' | 'hello' | 'groups' | 'confirm' | 'done' | 'failed';

export class PairingInitiator {
  readonly #o: PairingInitiatorOptions;
  readonly phoneId = randomBytes(16).toString('hex');
  #phase: Phase = 'new';
  #p: MlsProfile | undefined;
  #signing: SigningIdentity | undefined;
  #deviceId = '';
  #hubSig: Uint8Array | undefined;
  #hubTime = 0;
  #pending: { kind: GroupKind; pub: KeyPackage; priv: PrivateKeyPackage } | undefined;
  #groups = new Map<GroupKind, ClientState>();
  #phone: E2eePhone | undefined;
  #failure: InitiatorError | undefined;

  constructor(o: PairingInitiatorOptions) {
    this.#o = o;
  }

  get finished(): boolean {
    return this.#phase === 'done' || this.#phase === 'failed';
  }
  get failure(): InitiatorError | undefined {
    return this.#failure;
  }
  /** The paired phone (after `paired`). */
  get phone(): E2eePhone | undefined {
    return this.#phone;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  async start(): Promise<PairingFrame> {
    const p =
      this.#o.profile instanceof LazyMlsProfile ? await this.#o.profile.get() : this.#o.profile;
    this.#p = p;
    this.#signing = await newSigningIdentity(p, phoneIdentity(this.phoneId));
    this.#phase = 'hello';
    return {
      t: 'hello',
      versions: [...(this.#o.versions ?? [E2EE_PROTOCOL_VERSION])],
      phoneTime: this.#now(),
      phoneId: this.phoneId,
      signaturePublicKey: b64(this.#signing.signaturePublicKey),
      pskId: b64(this.#o.psk.id),
    };
  }

  /** Handle one hub frame; returns frames to send (an `error` frame on failure, then finished). */
  async handle(f: PairingFrame): Promise<PairingFrame[]> {
    try {
      return await this.#handle(f);
    } catch (e) {
      const err =
        e instanceof InitiatorError
          ? e
          : new InitiatorError('EPAIRING_FAILED', `pairing failed: ${reasonOf(e)}`, { cause: e });
      this.#failure ??= err;
      this.#phase = 'failed';
      this.#groups.clear();
      return err.code === 'EPEER_ABORTED' ? [] : [errorFrame(err.code, err.message)];
    }
  }

  abort(reason = 'aborted'): void {
    if (this.finished) return;
    this.#failure = new InitiatorError('EABORTED', reason);
    this.#phase = 'failed';
    this.#groups.clear();
  }

  async #keyPackageFor(kind: GroupKind): Promise<PairingFrame> {
    const p = this.#p as MlsProfile;
    const kp = await newKeyPackage(
      p,
      this.#signing as SigningIdentity,
      this.#now(),
      this.#hubTime,
      this.#o.leaf,
    );
    this.#pending = { kind, pub: kp.publicPackage, priv: kp.privatePackage };
    return {
      t: 'key-package',
      group: kind,
      keyPackage: b64(encodeKeyPackageMessage(p, kp.publicPackage)),
    };
  }

  /** The hub's leaf came from its key package: its lifetime must fit both clocks. */
  #checkHubLifetime(kind: GroupKind, st: ClientState): void {
    const i = leafIndexOf(st, hubIdentity(this.#deviceId));
    const node = i === undefined ? undefined : st.ratchetTree[2 * i];
    const leaf = node?.nodeType === 'leaf' ? node.leaf : undefined;
    if (leaf?.leafNodeSource !== 'key_package') return;
    const problem = checkKeyPackageLifetime(leaf.lifetime, this.#now(), this.#hubTime);
    if (problem !== undefined)
      throw new InitiatorError(
        'EKEY_PACKAGE_LIFETIME',
        `${kind}: the hub's key package lifetime is rejected: ${problem}`,
      );
  }

  async #handle(f: PairingFrame): Promise<PairingFrame[]> {
    const p = this.#p;
    if (p === undefined) throw new InitiatorError('EUNEXPECTED_FRAME', 'start() first');
    if (f.t === 'error')
      throw new InitiatorError('EPEER_ABORTED', `hub aborted pairing: ${f.code}: ${f.message}`);
    switch (this.#phase) {
      case 'new':
      case 'done':
      case 'failed':
        throw new InitiatorError('EUNEXPECTED_FRAME', `pairing is ${this.#phase}`);
      case 'hello': {
        if (f.t !== 'hello-ack')
          throw new InitiatorError('EUNEXPECTED_FRAME', `expected hello-ack, got ${f.t}`);
        if (!(this.#o.versions ?? [E2EE_PROTOCOL_VERSION]).includes(f.version))
          throw new InitiatorError('EVERSION', `hub chose unsupported version ${f.version}`);
        if (f.groups.join(',') !== GROUP_KINDS.join(','))
          throw new InitiatorError('EUNEXPECTED_FRAME', `hub offers groups ${f.groups.join(',')}`);
        this.#deviceId = f.deviceId;
        this.#hubSig = unb64(f.signaturePublicKey);
        this.#hubTime = f.hubTime;
        this.#phase = 'groups';
        return [await this.#keyPackageFor('motion')];
      }
      case 'groups': {
        if (f.t !== 'welcome')
          throw new InitiatorError('EUNEXPECTED_FRAME', `expected welcome, got ${f.t}`);
        const pend = this.#pending;
        if (pend?.kind !== f.group)
          throw new InitiatorError(
            'EUNEXPECTED_FRAME',
            `welcome for ${f.group}, expected ${pend?.kind ?? 'none'}`,
          );
        const m = decodeMessage(p, unb64(f.welcome));
        if (m?.wireformat !== 'mls_welcome')
          throw new InitiatorError('EUNEXPECTED_FRAME', `${f.group}: not a Welcome`);
        const signing = this.#signing as SigningIdentity;
        const auth = new PinnedAuthService([
          signing,
          { identity: hubIdentity(this.#deviceId), signaturePublicKey: this.#hubSig as Uint8Array },
        ]);
        let st: ClientState;
        try {
          st = await p.mls.joinGroup(
            m.welcome,
            pend.pub,
            pend.priv,
            pskIndexOf(p, undefined, [this.#o.psk]),
            p.cs,
            undefined,
            undefined,
            clientConfig(p.mls, auth),
          );
        } catch (e) {
          const msg = reasonOf(e);
          if (/tag|decrypt|psk/i.test(msg))
            throw new InitiatorError(
              'EPSK_MISMATCH',
              `${f.group}: cannot open the Welcome: wrong pairing secret (${msg})`,
              { cause: e },
            );
          throw new InitiatorError('EPAIRING_FAILED', `${f.group}: join failed: ${msg}`, {
            cause: e,
          });
        }
        if (!Buffer.from(st.groupContext.groupId).equals(Buffer.from(unb64(f.groupId))))
          throw new InitiatorError('EUNEXPECTED_FRAME', `${f.group}: group id mismatch`);
        this.#checkHubLifetime(f.group, st);
        this.#groups.set(f.group, forgetPastEpochs(p, st));
        const nextKind = GROUP_KINDS[this.#groups.size];
        if (nextKind !== undefined) return [await this.#keyPackageFor(nextKind)];
        this.#phase = 'confirm';
        const mac = await pairingConfirmMac(
          p,
          GROUP_KINDS.map((k) => this.#groups.get(k) as ClientState),
          this.phoneId,
        );
        return [{ t: 'confirm', mac: b64(mac) }];
      }
      case 'confirm': {
        if (f.t !== 'paired')
          throw new InitiatorError('EUNEXPECTED_FRAME', `expected paired, got ${f.t}`);
        if (f.phoneId !== this.phoneId)
          throw new InitiatorError('EUNEXPECTED_FRAME', 'paired frame for another phone');
        const signing = this.#signing as SigningIdentity;
        const info: PhoneFile = {
          version: 1,
          phoneId: this.phoneId,
          deviceId: this.#deviceId,
          identity: b64(signing.identity),
          signaturePublicKey: b64(signing.signaturePublicKey),
          signaturePrivateKey: b64(signing.signaturePrivateKey),
          hubSignaturePublicKey: b64(this.#hubSig as Uint8Array),
          admin: f.admin,
          groups: Object.fromEntries(
            GROUP_KINDS.map((k) => [
              k,
              b64((this.#groups.get(k) as ClientState).groupContext.groupId),
            ]),
          ) as Record<GroupKind, string>,
        };
        this.#phone = await E2eePhone.persistPairing(
          {
            dir: this.#o.dir,
            fs: this.#o.fs,
            profile: p,
            ...(this.#o.now ? { now: this.#o.now } : {}),
          },
          info,
          this.#groups,
        );
        this.#groups.clear();
        this.#phase = 'done';
        return [];
      }
    }
  }
}
