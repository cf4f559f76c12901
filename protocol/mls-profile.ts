/**
 * Vigil's MLS profile on ts-mls 1.6.4 (RFC 9420), shared by the hub and the
 * companion. Pure (no I/O). ts-mls and its post-quantum peers are loaded
 * lazily by `loadMlsProfile()` so a process that never touches MLS (or touches
 * it late) does not pay their heap.
 *
 * Three ts-mls facts shape this module (see docs/protocol.md, "MLS profile"):
 *  1. `retainKeysForEpochs: 0` keeps EVERY past epoch (slice(-0)). We never
 *     keep past epochs: `encodeState` always writes an empty
 *     historicalReceiverData, and `forgetPastEpochs` zeroes and drops it in
 *     memory after each merge.
 *  2. `decodeGroupState` drops the client config: `decodeState` re-attaches
 *     ours, with the pinned authentication service.
 *  3. There is no public API for Update proposals: a phone refreshes its leaf
 *     by re-add (its heartbeat carries fresh key packages of the same
 *     identity; the hub commits Remove + Add and sends a Welcome).
 */
import type {
  AuthenticationService,
  Capabilities,
  CiphersuiteImpl,
  CryptoProvider,
  ClientConfig,
  ClientState,
  Credential,
  KeyPackage,
  MLSMessage,
  PrivateKeyPackage,
  Proposal,
  PskIndex,
} from 'ts-mls';
import type * as TsMls from 'ts-mls';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { VigilError } from '../base/errors.js';
import { importMlsFile } from './ts-mls-files.js';
import type { TsMlsFile } from './ts-mls-files.js';
import type { ItemKind } from './items.js';

export const CIPHERSUITE_NAME = 'MLS_256_XWING_CHACHA20POLY1305_SHA512_Ed25519' as const;
/** Wire protocol version of Vigil's E2EE frames and container. */
export const E2EE_PROTOCOL_VERSION = 1;

export const GROUP_KINDS = ['motion', 'thumbnail', 'livestream', 'config', 'notification'] as const;
export type GroupKind = (typeof GROUP_KINDS)[number];

/** Which group an item is sealed in. */
export const GROUP_FOR_ITEM = {
  clip: 'motion',
  thumbnail: 'thumbnail',
  live: 'livestream',
} as const satisfies Record<ItemKind, GroupKind>;

/**
 * The groups an item of each kind may be sealed in: its own (GROUP_FOR_ITEM),
 * and for a thumbnail also its clip's group, when it rides in the clip's
 * epoch (one epoch advance per motion event; docs/decisions.md). A phone
 * finds the group by the recipient's group id.
 */
export const ITEM_GROUPS = {
  clip: ['motion'],
  thumbnail: ['thumbnail', 'motion'],
  live: ['livestream'],
} as const satisfies Record<ItemKind, readonly GroupKind[]>;

/** Exporter labels (RFC 9420 §8.5 MLS-Exporter). */
export const EXPORTER_LABEL = {
  itemWrap: 'vigil item wrap v1',
  pairingConfirm: 'vigil pairing confirm v1',
  epochCheck: 'vigil epoch check v1',
} as const;

export const HUB_IDENTITY_PREFIX = 'vigil-hub:';
export const PHONE_IDENTITY_PREFIX = 'vigil-phone:';

/** Key-package lifetime: an hour of clock slack before, 90 days after. */
export const KEY_PACKAGE_LIFETIME_MS = 90 * 24 * 3600 * 1000;
export const CLOCK_SLACK_MS = 3600 * 1000;

/**
 * The part of ts-mls Vigil uses, loaded from its modules one by one rather
 * than through the package index: the index also loads the noble crypto
 * provider (AES-GCM tables, NIST curves) that the X-Wing/ChaCha20 suite never
 * uses — ~1.8 MiB of RSS on the hub (issue #19).
 */
export type MlsModule = Pick<
  typeof TsMls,
  | 'createCommit'
  | 'createApplicationMessage'
  | 'createGroup'
  | 'decodeGroupState'
  | 'decodeMlsMessage'
  | 'defaultCapabilities'
  | 'defaultKeyPackageEqualityConfig'
  | 'defaultLifetime'
  | 'defaultPaddingConfig'
  | 'emptyPskIndex'
  | 'encodeGroupState'
  | 'encodeMlsMessage'
  | 'generateKeyPackage'
  | 'generateKeyPackageWithKey'
  | 'bytesToBase64'
  | 'getCiphersuiteFromName'
  | 'joinGroup'
  | 'makePskIndex'
  | 'mlsExporter'
  | 'processPrivateMessage'
  | 'zeroOutUint8Array'
>;

/** Where each part of MlsModule lives in the package (dist/src/, beside its entry point). */
const MLS_MODULE_FILES: Readonly<Partial<Record<TsMlsFile, readonly (keyof MlsModule)[]>>> = {
  'createCommit.js': ['createCommit'],
  'createMessage.js': ['createApplicationMessage'],
  'clientState.js': [
    'createGroup',
    'decodeGroupState',
    'encodeGroupState',
    'joinGroup',
    'makePskIndex',
  ],
  'message.js': ['decodeMlsMessage', 'encodeMlsMessage'],
  'defaultCapabilities.js': ['defaultCapabilities'],
  'keyPackageEqualityConfig.js': ['defaultKeyPackageEqualityConfig'],
  'lifetime.js': ['defaultLifetime'],
  'paddingConfig.js': ['defaultPaddingConfig'],
  'pskIndex.js': ['emptyPskIndex'],
  'keyPackage.js': ['generateKeyPackage', 'generateKeyPackageWithKey'],
  'crypto/ciphersuite.js': ['getCiphersuiteFromName'],
  'keySchedule.js': ['mlsExporter'],
  'processMessages.js': ['processPrivateMessage'],
  'util/byteArray.js': ['bytesToBase64', 'zeroOutUint8Array'],
};

/**
 * One module of ts-mls by file (protocol/ts-mls-files.ts). Each name is checked, so a
 * ts-mls that moved one fails here, clearly.
 */
async function loadMlsFile(
  file: TsMlsFile,
  names: readonly string[],
): Promise<(readonly [string, unknown])[]> {
  const m = await importMlsFile(file);
  return names.map((n) => {
    if (m[n] === undefined)
      throw new MlsProfileError('EMLS_LIBRARY', `ts-mls: ${file} does not export ${n}`);
    return [n, m[n]] as const;
  });
}

async function loadMlsModule(): Promise<MlsModule> {
  const parts = await Promise.all(
    (Object.entries(MLS_MODULE_FILES) as [TsMlsFile, readonly (keyof MlsModule)[]][]).map(
      ([file, names]) => loadMlsFile(file, names),
    ),
  );
  return Object.fromEntries(parts.flat()) as unknown as MlsModule;
}

/**
 * ts-mls's default (noble + WebCrypto) provider, for the `js` profile only: it
 * loads @hpke/core's HPKE, KEMs and AEADs (16 modules) that the native provider
 * never calls (issue #19, memory).
 */
async function loadDefaultProvider(): Promise<CryptoProvider> {
  const [entry] = await loadMlsFile('crypto/implementation/default/provider.js', [
    'defaultCryptoProvider',
  ]);
  return entry?.[1] as CryptoProvider;
}

export class MlsProfileError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'MlsProfileError';
  }
}

/**
 * Which crypto runs the suite: `native` (protocol/native-crypto.ts: node:crypto
 * for everything but ML-KEM) or `js` (ts-mls's default provider: noble and
 * WebCrypto). Both produce the same bytes; a hub on one talks to a phone on
 * the other.
 */
export type MlsCrypto = 'native' | 'js';
export const DEFAULT_MLS_CRYPTO: MlsCrypto = 'native';

export interface MlsProfileOptions {
  readonly crypto?: MlsCrypto;
}

/** The loaded library plus the ciphersuite implementation. */
export interface MlsProfile {
  readonly mls: MlsModule;
  readonly cs: CiphersuiteImpl;
  readonly crypto: MlsCrypto;
}

/** Load ts-mls and the X-Wing/ChaCha20 suite (a few hundred ms, once per process). */
export async function loadMlsProfile(opts: MlsProfileOptions = {}): Promise<MlsProfile> {
  const crypto = opts.crypto ?? DEFAULT_MLS_CRYPTO;
  const mls = await loadMlsModule();
  const provider =
    crypto === 'native'
      ? (await import('./native-crypto.js')).nativeCryptoProvider
      : await loadDefaultProvider();
  // The provider's own method: ts-mls's getCiphersuiteImpl() wrapper imports the default
  // provider statically for its default argument.
  const cs = await provider.getCiphersuiteImpl(mls.getCiphersuiteFromName(CIPHERSUITE_NAME));
  return { mls, cs, crypto };
}

/** A lazily loaded profile holder: the composition root owns one. */
export class LazyMlsProfile {
  readonly #opts: MlsProfileOptions;
  #p: Promise<MlsProfile> | undefined;
  constructor(opts: MlsProfileOptions = {}) {
    this.#opts = opts;
  }
  get(): Promise<MlsProfile> {
    this.#p ??= loadMlsProfile(this.#opts);
    return this.#p;
  }
}

// ---- identities & authentication --------------------------------------------------

/** A credential pinned at pairing: identity bytes + Ed25519 signature public key. */
export interface PinnedCredential {
  readonly identity: Uint8Array;
  readonly signaturePublicKey: Uint8Array;
}

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The real authentication service: a credential is valid only if it is a basic
 * credential whose identity AND signature key were pinned at pairing.
 * Everything else (the library's testing service accepts all) is rejected.
 */
export class PinnedAuthService implements AuthenticationService {
  #pins: PinnedCredential[] = [];
  /** Rejections seen, for diagnostics ("foreign credential"). */
  rejected = 0;

  constructor(pins: readonly PinnedCredential[] = []) {
    for (const p of pins) this.pin(p);
  }

  pin(p: PinnedCredential): void {
    if (!this.isPinned(p.identity, p.signaturePublicKey))
      this.#pins.push({
        identity: Uint8Array.from(p.identity),
        signaturePublicKey: Uint8Array.from(p.signaturePublicKey),
      });
  }

  unpin(identity: Uint8Array): void {
    this.#pins = this.#pins.filter((p) => !eq(p.identity, identity));
  }

  isPinned(identity: Uint8Array, signaturePublicKey: Uint8Array): boolean {
    return this.#pins.some(
      (p) => eq(p.identity, identity) && eq(p.signaturePublicKey, signaturePublicKey),
    );
  }

  get pins(): readonly PinnedCredential[] {
    return this.#pins;
  }

  validateCredential(credential: Credential, signaturePublicKey: Uint8Array): Promise<boolean> {
    const okay =
      credential.credentialType === 'basic' &&
      this.isPinned(credential.identity, signaturePublicKey);
    if (!okay) this.rejected += 1;
    return Promise.resolve(okay);
  }
}

export function basicCredential(identity: Uint8Array): Credential {
  return { credentialType: 'basic', identity };
}

export function hubIdentity(deviceId: string): Uint8Array {
  return Buffer.from(HUB_IDENTITY_PREFIX + deviceId, 'utf8');
}
export function phoneIdentity(phoneId: string): Uint8Array {
  return Buffer.from(PHONE_IDENTITY_PREFIX + phoneId, 'utf8');
}

/** Vigil's client config: tiny retention (past epochs are dropped by us anyway), pinned AS. */
export function clientConfig(mls: MlsModule, auth: AuthenticationService): ClientConfig {
  return {
    keyRetentionConfig: {
      retainKeysForGenerations: 4,
      retainKeysForEpochs: 1,
      maximumForwardRatchetSteps: 1000,
    },
    lifetimeConfig: {
      maximumTotalLifetime:
        BigInt(Math.ceil((KEY_PACKAGE_LIFETIME_MS + CLOCK_SLACK_MS) / 1000)) + 60n,
      validateLifetimeOnReceive: true,
    },
    keyPackageEqualityConfig: mls.defaultKeyPackageEqualityConfig,
    paddingConfig: mls.defaultPaddingConfig,
    authService: auth,
  };
}

/**
 * Key-package lifetime in seconds. At pairing both clocks are known (time
 * sync): the window spans both, so a hub whose clock lags (no RTC) still
 * accepts the phone's key packages and vice versa.
 */
export function keyPackageLifetime(
  nowMs: number,
  otherMs: number = nowMs,
): { notBefore: bigint; notAfter: bigint } {
  const lo = Math.max(0, Math.min(nowMs, otherMs) - CLOCK_SLACK_MS);
  const hi = Math.max(nowMs, otherMs) + KEY_PACKAGE_LIFETIME_MS;
  return { notBefore: BigInt(Math.floor(lo / 1000)), notAfter: BigInt(Math.floor(hi / 1000)) };
}

/**
 * Allowance on both lifetime bounds for the handshake's own duration: each
 * side checks against its clock at receipt and the peer's clock as last
 * reported, and a pairing session lasts at most 3 minutes.
 */
export const LIFETIME_ALLOWANCE_MS = 5 * 60 * 1000;

/** The widest key-package lifetime (seconds) accepted while pairing, given both clocks. */
export function acceptedLifetimeBounds(
  nowMs: number,
  peerMs: number,
): { minNotBefore: bigint; maxNotAfter: bigint } {
  const lo = Math.max(0, Math.min(nowMs, peerMs) - CLOCK_SLACK_MS - LIFETIME_ALLOWANCE_MS);
  const hi = Math.max(nowMs, peerMs) + KEY_PACKAGE_LIFETIME_MS + LIFETIME_ALLOWANCE_MS;
  return {
    minNotBefore: BigInt(Math.floor(lo / 1000)),
    maxNotAfter: BigInt(Math.floor(hi / 1000)),
  };
}

/**
 * Validate a received key package's lifetime (seconds) against both clocks:
 * `min(clocks) - 1 h - allowance <= notBefore <= now <= notAfter <=
 * max(clocks) + 90 days + allowance`. Returns why it fails, or undefined.
 */
export function checkKeyPackageLifetime(
  lifetime: { readonly notBefore: bigint; readonly notAfter: bigint },
  nowMs: number,
  peerMs: number,
): string | undefined {
  const { minNotBefore, maxNotAfter } = acceptedLifetimeBounds(nowMs, peerMs);
  const now = BigInt(Math.floor(nowMs / 1000));
  const { notBefore, notAfter } = lifetime;
  if (notBefore < minNotBefore)
    return `notBefore ${notBefore} is earlier than ${minNotBefore} (min(clocks) - 1 h)`;
  if (notAfter > maxNotAfter)
    return `notAfter ${notAfter} is later than ${maxNotAfter} (max(clocks) + 90 days)`;
  if (notBefore > now || notAfter < now)
    return `lifetime ${notBefore}..${notAfter} does not contain now (${now})`;
  return undefined;
}

export interface SigningIdentity {
  readonly identity: Uint8Array;
  readonly signaturePublicKey: Uint8Array;
  readonly signaturePrivateKey: Uint8Array;
}

export async function newSigningIdentity(
  p: MlsProfile,
  identity: Uint8Array,
): Promise<SigningIdentity> {
  const kp = await p.cs.signature.keygen();
  return { identity, signaturePublicKey: kp.publicKey, signaturePrivateKey: kp.signKey };
}

/** A fresh key package for one group, signed by the long-term signing key. */
export async function newKeyPackage(
  p: MlsProfile,
  who: SigningIdentity,
  nowMs: number,
  otherClockMs: number = nowMs,
  opts: LeafCapabilityOptions = {},
): Promise<{ publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }> {
  return p.mls.generateKeyPackageWithKey(
    basicCredential(who.identity),
    leafCapabilities(p, opts),
    keyPackageLifetime(nowMs, otherClockMs),
    [],
    { signKey: who.signaturePrivateKey, publicKey: who.signaturePublicKey },
    p.cs,
  );
}

// ---- pathless epoch advance ----------------------------------------------------------

/**
 * A private-use extension type (RFC 9420 §17.3: 0xF000–0xFFFF) that a member
 * lists in its leaf's capabilities to say it processes a **pathless advance**:
 * a commit whose only proposal is a resumption PSK of the group's current
 * epoch, and which carries no UpdatePath (RFC 9420 §12.4: the path may be
 * omitted when no Update or Remove is covered and the list is not empty).
 * It is a capability only: no extension of this type is ever sent. A
 * companion from before it lacks the resumption PSK lookup and would reject
 * such a commit, so the hub sends one only to a phone whose leaf lists it
 * (docs/decisions.md, "Pathless epoch advances").
 */
export const PATHLESS_ADVANCE_CAPABILITY = 0xf1a0;

export interface LeafCapabilityOptions {
  /**
   * Leave PATHLESS_ADVANCE_CAPABILITY out, as a companion before it did (tests
   * of the hub's fallback to a commit with a path for every advance).
   */
  readonly withoutPathlessAdvance?: boolean;
}

/** The capabilities of a Vigil leaf: ts-mls's defaults plus PATHLESS_ADVANCE_CAPABILITY. */
export function leafCapabilities(p: MlsProfile, opts: LeafCapabilityOptions = {}): Capabilities {
  const c = p.mls.defaultCapabilities();
  if (opts.withoutPathlessAdvance === true) return c;
  return { ...c, extensions: [...c.extensions, PATHLESS_ADVANCE_CAPABILITY] };
}

/** Whether the member at `leaf` (a leaf index) lists PATHLESS_ADVANCE_CAPABILITY. */
export function acceptsPathlessAdvance(state: ClientState, leaf: number): boolean {
  const n = state.ratchetTree[leaf * 2];
  return (
    n?.nodeType === 'leaf' && n.leaf.capabilities.extensions.includes(PATHLESS_ADVANCE_CAPABILITY)
  );
}

/**
 * The one proposal of a pathless advance: the group's own resumption PSK of its
 * current epoch (usage `application`) with a fresh nonce. It adds no secret the
 * members lack; it only makes the commit one that RFC 9420 lets go without a path.
 */
export function pathlessAdvanceProposal(p: MlsProfile, state: ClientState): Proposal {
  return {
    proposalType: 'psk',
    psk: {
      preSharedKeyId: {
        psktype: 'resumption',
        usage: 'application',
        pskGroupId: state.groupContext.groupId,
        pskEpoch: state.groupContext.epoch,
        pskNonce: randomBytes(p.cs.kdf.size),
      },
    },
  };
}

// ---- external PSK -------------------------------------------------------------

export interface ExternalPsk {
  readonly id: Uint8Array;
  readonly secret: Uint8Array;
}

export function pskIndexOf(
  p: MlsProfile,
  state: ClientState | undefined,
  psks: readonly ExternalPsk[],
): PskIndex {
  const rec: Record<string, Uint8Array> = {};
  for (const k of psks) rec[p.mls.bytesToBase64(k.id)] = k.secret;
  return p.mls.makePskIndex(state, rec);
}

export function externalPskProposal(pskId: Uint8Array): Proposal {
  return {
    proposalType: 'psk',
    psk: { preSharedKeyId: { psktype: 'external', pskId, pskNonce: randomBytes(64) } },
  };
}

// ---- state persistence --------------------------------------------------------

/** Encode a state WITHOUT any past-epoch receiver data (forward secrecy). */
export function encodeState(p: MlsProfile, state: ClientState): Uint8Array {
  return p.mls.encodeGroupState({ ...state, historicalReceiverData: new Map() });
}

/** Decode a state and re-attach the client config (ts-mls drops it). */
export function decodeState(
  p: MlsProfile,
  bytes: Uint8Array,
  config: ClientConfig,
): ClientState | undefined {
  const d = p.mls.decodeGroupState(bytes, 0);
  if (d === undefined || d[1] !== bytes.length) return undefined;
  return { ...d[0], historicalReceiverData: new Map(), clientConfig: config };
}

/**
 * Zero every secret kept for past epochs and return the state without them.
 * Call only after the new state is durable (the old state is then dead).
 */
export function forgetPastEpochs(p: MlsProfile, state: ClientState): ClientState {
  for (const data of state.historicalReceiverData.values()) {
    for (const node of data.secretTree) {
      for (const g of [node.handshake, node.application]) {
        p.mls.zeroOutUint8Array(g.secret);
        for (const v of Object.values(g.unusedGenerations)) p.mls.zeroOutUint8Array(v);
      }
    }
    p.mls.zeroOutUint8Array(data.senderDataSecret);
    p.mls.zeroOutUint8Array(data.resumptionPsk);
  }
  return { ...state, historicalReceiverData: new Map() };
}

export function zeroAll(p: MlsProfile, bufs: readonly Uint8Array[]): void {
  for (const b of bufs) p.mls.zeroOutUint8Array(b);
}

// ---- exporter-derived keys ------------------------------------------------------

/** The wrap key for one item in this group's current epoch. */
export function itemWrapKey(
  p: MlsProfile,
  state: ClientState,
  itemId: Uint8Array,
): Promise<Uint8Array> {
  return p.mls.mlsExporter(
    state.keySchedule.exporterSecret,
    EXPORTER_LABEL.itemWrap,
    itemId,
    32,
    p.cs,
  );
}

export function exportSecret(
  p: MlsProfile,
  state: ClientState,
  label: string,
  context: Uint8Array,
  length = 32,
): Promise<Uint8Array> {
  return p.mls.mlsExporter(state.keySchedule.exporterSecret, label, context, length, p.cs);
}

// ---- message codec helpers -----------------------------------------------------

export function encodeMessage(p: MlsProfile, m: MLSMessage): Uint8Array {
  return p.mls.encodeMlsMessage(m);
}

/** Decode an MLSMessage; undefined for bad bytes (never throws). */
export function decodeMessage(p: MlsProfile, bytes: Uint8Array): MLSMessage | undefined {
  try {
    const d = p.mls.decodeMlsMessage(bytes, 0);
    if (d === undefined || d[1] !== bytes.length) return undefined;
    return d[0];
  } catch {
    return undefined;
  }
}

export function encodeKeyPackageMessage(p: MlsProfile, kp: KeyPackage): Uint8Array {
  return p.mls.encodeMlsMessage({
    version: 'mls10',
    wireformat: 'mls_key_package',
    keyPackage: kp,
  });
}

export function decodeKeyPackageMessage(p: MlsProfile, bytes: Uint8Array): KeyPackage | undefined {
  const m = decodeMessage(p, bytes);
  return m?.wireformat === 'mls_key_package' ? m.keyPackage : undefined;
}

export function epochOf(state: ClientState): bigint {
  return state.groupContext.epoch;
}

export function groupIdOf(state: ClientState): Uint8Array {
  return state.groupContext.groupId;
}

/** Leaf index of the member whose credential identity equals `identity`. */
export function leafIndexOf(state: ClientState, identity: Uint8Array): number | undefined {
  for (let i = 0; i < state.ratchetTree.length; i += 2) {
    const n = state.ratchetTree[i];
    if (n?.nodeType !== 'leaf') continue;
    const c = n.leaf.credential;
    if (c.credentialType === 'basic' && eq(c.identity, identity)) return i / 2;
  }
  return undefined;
}

/**
 * Pairing key confirmation: HMAC-SHA256 keyed with the concatenated
 * `pairingConfirm` exports of the five groups (in GROUP_KINDS order) over
 * "vigil pairing confirm v1" || phoneId. Only a phone that joined every group
 * (so holds the right PSK) can compute it.
 */
export async function pairingConfirmMac(
  p: MlsProfile,
  states: readonly ClientState[],
  phoneId: string,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const st of states)
    parts.push(
      await exportSecret(p, st, EXPORTER_LABEL.pairingConfirm, Buffer.from(phoneId, 'utf8'), 32),
    );
  const key = Buffer.concat(parts);
  const mac = createHmac('sha256', key)
    .update(EXPORTER_LABEL.pairingConfirm)
    .update(phoneId)
    .digest();
  key.fill(0);
  return mac;
}

/** The 16-byte per-epoch check value carried by heartbeats (detects forked states). */
export async function epochCheck(p: MlsProfile, state: ClientState): Promise<Uint8Array> {
  return (await exportSecret(p, state, EXPORTER_LABEL.epochCheck, new Uint8Array(0), 16)).subarray(
    0,
    16,
  );
}
