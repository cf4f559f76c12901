/**
 * The companion side of Vigil's E2EE (never imports firmware/): joined group
 * states, item decryption, heartbeats, catch-up, admin requests.
 *
 * Storage (all through DurableFs; `fs` is the Foundation's layer):
 *   <dir>/phone.json             identity, hub pin, groups (commit point of pairing)
 *   <dir>/groups/<kind>.state    epoch u64 | n u8 | n x sha256(handshake) | GroupState
 *   <dir>/keys/<itemId>.key      JSON {itemId, group, epoch, cek, complete}
 *   <dir>/refresh/<kind>.kp      pending refresh key package (public + private)
 *
 * Item path order: process the header's handshake in memory -> unwrap the
 * content key (header authenticated) -> write the item key -> write the new
 * group state (atomic replace: the new state is durable before the old one is
 * gone) -> merge and forget the past epoch -> only then acknowledge.
 */
import type { ClientConfig, ClientState, KeyPackage, PrivateKeyPackage } from 'ts-mls';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  containerError,
  ContainerError,
  ContainerReader,
  unwrapContentKey,
  type ParsedHeader,
  type ReaderEvent,
  type Trailer,
} from '../../protocol/container.js';
import {
  b64,
  decodeConfigMessage,
  encodeConfigMessage,
  unb64,
  type ConfigMessage,
  type DesyncReport,
  type HeartbeatAckMessage,
  type InviteMessage,
  type NoticeMessage,
} from '../../protocol/e2ee-frames.js';
import { ValidationError, VigilError, reasonOf } from '../../base/errors.js';
import {
  GROUP_FOR_ITEM,
  GROUP_KINDS,
  LazyMlsProfile,
  PinnedAuthService,
  clientConfig,
  decodeMessage,
  decodeState,
  encodeKeyPackageMessage,
  encodeMessage,
  encodeState,
  epochCheck,
  forgetPastEpochs,
  hubIdentity,
  itemWrapKey,
  newKeyPackage,
  zeroAll,
  type GroupKind,
  type MlsProfile,
  type SigningIdentity,
} from '../../protocol/mls-profile.js';
import { Mutex } from '../../base/async.js';

/** The slice of the Foundation's DurableFs the phone needs (app/ must not import hw/). */
export interface PhoneFs {
  writeFileAtomic(path: string, data: Uint8Array | string, label?: string): Promise<void>;
  remove(path: string, label?: string): Promise<void>;
  ensureDir(dir: string): Promise<void>;
  cleanTemp(dir: string): Promise<number>;
  readIfExists(path: string): Promise<Buffer | undefined>;
}

export type PhoneErrorCode =
  | 'ENOT_PAIRED'
  | 'ENOT_RECIPIENT'
  | 'ESTALE_EPOCH'
  | 'EREPLAYED_COMMIT'
  | 'EEPOCH_GAP'
  | 'EMLS_FORK'
  | 'EMLS_REJECTED'
  | 'EHEADER_TAMPERED'
  | 'EDESYNC'
  | 'EREMOVED'
  | 'EREQUEST_FAILED'
  | 'EMLS_STATE_CORRUPT';

export class PhoneError extends VigilError {
  override readonly code: PhoneErrorCode;
  readonly details: Readonly<Record<string, string>>;
  constructor(
    code: PhoneErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, string> },
  ) {
    super(code, message, options);
    this.name = 'PhoneError';
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** A desync the hub reported or the phone detected: never silent. */
export class DesyncError extends PhoneError {
  readonly reports: readonly DesyncReport[];
  constructor(reports: readonly DesyncReport[]) {
    super(
      'EDESYNC',
      `hub and phone disagree: ${reports.map((r) => `${r.group} (phone ${r.phoneEpoch}, hub ${r.hubEpoch}): ${r.reason}`).join('; ')}`,
    );
    this.name = 'DesyncError';
    this.reports = reports;
  }
}

const b64u = z.string().regex(/^[A-Za-z0-9_-]*$/);
export const PhoneFile = z.strictObject({
  version: z.literal(1),
  phoneId: z.string().regex(/^[0-9a-f]{8,64}$/),
  deviceId: z.string().min(1).max(64),
  identity: b64u,
  signaturePublicKey: b64u,
  signaturePrivateKey: b64u,
  hubSignaturePublicKey: b64u,
  admin: z.boolean(),
  groups: z.record(z.enum(GROUP_KINDS), b64u),
});
export type PhoneFile = z.infer<typeof PhoneFile>;

const KeyRecord = z.strictObject({
  itemId: z.string().regex(/^[0-9a-f]{32}$/),
  group: z.enum(GROUP_KINDS),
  epoch: z.string().regex(/^[0-9]{1,20}$/),
  cek: b64u,
  complete: z.boolean(),
});
type KeyRecord = z.infer<typeof KeyRecord>;

const RefreshRecord = z.strictObject({
  publicPackage: b64u,
  privatePackage: z.strictObject({
    initPrivateKey: b64u,
    hpkePrivateKey: b64u,
    signaturePrivateKey: b64u,
  }),
});

/** How many applied handshake digests each group remembers (replay detection). */
export const REMEMBERED_HANDSHAKES = 16;

export function encodePhoneState(
  epoch: bigint,
  digests: readonly Uint8Array[],
  state: Uint8Array,
): Buffer {
  const head = Buffer.alloc(9);
  head.writeBigUInt64BE(epoch);
  head[8] = digests.length;
  return Buffer.concat([head, ...digests, state]);
}

export function decodePhoneState(
  bytes: Uint8Array,
): { epoch: bigint; digests: Uint8Array[]; state: Uint8Array } | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 9) return undefined;
  const n = b[8] ?? 0;
  if (b.length < 9 + 32 * n + 1) return undefined;
  const digests: Uint8Array[] = [];
  for (let i = 0; i < n; i++)
    digests.push(new Uint8Array(b.subarray(9 + 32 * i, 9 + 32 * (i + 1))));
  return { epoch: b.readBigUInt64BE(0), digests, state: new Uint8Array(b.subarray(9 + 32 * n)) };
}

function digestOf(handshake: Uint8Array): Uint8Array {
  return createHash('sha256').update(handshake).digest();
}

export interface PhoneOptions {
  readonly dir: string;
  readonly fs: PhoneFs;
  readonly profile: MlsProfile | LazyMlsProfile;
  readonly now?: () => number;
}

interface GroupRuntime {
  state: ClientState;
  digests: Uint8Array[];
  /** Keys the last processing used: zeroed only once the result is merged. */
  consumed?: Uint8Array[];
}

export interface OpenedItem {
  readonly header: ParsedHeader;
  readonly itemId: string;
  readonly plaintext: Buffer;
  readonly trailer: Trailer;
}

export type Inbound =
  | {
      readonly kind: 'heartbeat-ack';
      readonly ack: HeartbeatAckMessage;
      readonly caughtUp: number;
      readonly confirmedAcks: readonly string[];
    }
  | { readonly kind: 'invite'; readonly invite: InviteMessage }
  | { readonly kind: 'removed'; readonly phoneId: string; readonly requestId: string }
  | { readonly kind: 'notice'; readonly notice: NoticeMessage }
  | { readonly kind: 'app'; readonly topic: string; readonly body: Uint8Array };

export class E2eePhone {
  readonly dir: string;
  readonly fs: PhoneFs;
  readonly p: MlsProfile;
  readonly now: () => number;
  readonly info: PhoneFile;
  readonly auth: PinnedAuthService;
  readonly config: ClientConfig;
  readonly signing: SigningIdentity;
  #groups = new Map<GroupKind, GroupRuntime>();
  #mutex = new Mutex();
  #hbSeq = 0;
  #pendingRequests = new Set<string>();
  /** Acks the hub confirmed receiving (not re-sent; after a restart they are, harmlessly). */
  #confirmedAcks = new Set<string>();

  private constructor(o: PhoneOptions, p: MlsProfile, info: PhoneFile) {
    this.dir = o.dir;
    this.fs = o.fs;
    this.p = p;
    this.now = o.now ?? Date.now;
    this.info = info;
    this.signing = {
      identity: unb64(info.identity),
      signaturePublicKey: unb64(info.signaturePublicKey),
      signaturePrivateKey: unb64(info.signaturePrivateKey),
    };
    this.auth = new PinnedAuthService([
      this.signing,
      {
        identity: hubIdentity(info.deviceId),
        signaturePublicKey: unb64(info.hubSignaturePublicKey),
      },
    ]);
    this.config = clientConfig(p.mls, this.auth);
  }

  static paths(dir: string): { phone: string; groups: string; keys: string; refresh: string } {
    return {
      phone: join(dir, 'phone.json'),
      groups: join(dir, 'groups'),
      keys: join(dir, 'keys'),
      refresh: join(dir, 'refresh'),
    };
  }

  /**
   * Open the phone state in `dir`. Returns undefined when not paired; any
   * half-made pairing state is wiped.
   */
  static async open(o: PhoneOptions): Promise<E2eePhone | undefined> {
    const p = o.profile instanceof LazyMlsProfile ? await o.profile.get() : o.profile;
    const paths = E2eePhone.paths(o.dir);
    for (const d of [o.dir, paths.groups, paths.keys, paths.refresh]) {
      await o.fs.ensureDir(d);
      await o.fs.cleanTemp(d);
    }
    const raw = await o.fs.readIfExists(paths.phone);
    if (raw === undefined) {
      for (const kind of GROUP_KINDS)
        await o.fs.remove(join(paths.groups, `${kind}.state`), 'phone-group-wipe');
      return undefined;
    }
    let info: PhoneFile;
    try {
      info = PhoneFile.parse(JSON.parse(raw.toString('utf8')));
    } catch (e) {
      throw new PhoneError('EMLS_STATE_CORRUPT', `${paths.phone} is invalid`, { cause: e });
    }
    const ph = new E2eePhone(o, p, info);
    for (const kind of GROUP_KINDS) {
      const f = await o.fs.readIfExists(join(paths.groups, `${kind}.state`));
      const d = f === undefined ? undefined : decodePhoneState(f);
      const st = d === undefined ? undefined : decodeState(p, d.state, ph.config);
      if (d === undefined || st === undefined || st.groupContext.epoch !== d.epoch)
        throw new PhoneError('EMLS_STATE_CORRUPT', `group ${kind} state is missing or corrupt`);
      ph.#groups.set(kind, { state: st, digests: d.digests });
    }
    return ph;
  }

  /** Persist a freshly paired phone: groups first, phone.json last (the commit point). */
  static async persistPairing(
    o: PhoneOptions,
    info: PhoneFile,
    states: ReadonlyMap<GroupKind, ClientState>,
  ): Promise<E2eePhone> {
    const p = o.profile instanceof LazyMlsProfile ? await o.profile.get() : o.profile;
    const paths = E2eePhone.paths(o.dir);
    for (const d of [o.dir, paths.groups, paths.keys, paths.refresh]) await o.fs.ensureDir(d);
    for (const kind of GROUP_KINDS) {
      const st = states.get(kind);
      if (st === undefined)
        throw new PhoneError('EMLS_STATE_CORRUPT', `pairing lacks group ${kind}`);
      await o.fs.writeFileAtomic(
        join(paths.groups, `${kind}.state`),
        encodePhoneState(st.groupContext.epoch, [], encodeState(p, st)),
        `phone-group-${kind}`,
      );
    }
    await o.fs.writeFileAtomic(paths.phone, JSON.stringify(PhoneFile.parse(info)), 'phone-info');
    const ph = new E2eePhone(o, p, info);
    for (const [kind, st] of states)
      ph.#groups.set(kind, {
        state: { ...forgetPastEpochs(p, st), clientConfig: ph.config },
        digests: [],
      });
    return ph;
  }

  get phoneId(): string {
    return this.info.phoneId;
  }
  get deviceId(): string {
    return this.info.deviceId;
  }
  get admin(): boolean {
    return this.info.admin;
  }

  epoch(kind: GroupKind): bigint {
    return (this.#groups.get(kind) as GroupRuntime).state.groupContext.epoch;
  }
  epochs(): Record<GroupKind, bigint> {
    return Object.fromEntries(GROUP_KINDS.map((k) => [k, this.epoch(k)])) as Record<
      GroupKind,
      bigint
    >;
  }
  groupId(kind: GroupKind): Uint8Array {
    return (this.#groups.get(kind) as GroupRuntime).state.groupContext.groupId;
  }
  stateSize(kind: GroupKind): number {
    return encodeState(this.p, (this.#groups.get(kind) as GroupRuntime).state).length;
  }
  /** The encoded current state of a group (what a thief of the phone would get). */
  exportState(kind: GroupKind): Uint8Array {
    return encodeState(this.p, (this.#groups.get(kind) as GroupRuntime).state);
  }

  #groupFile(kind: GroupKind): string {
    return join(E2eePhone.paths(this.dir).groups, `${kind}.state`);
  }
  #keyFile(itemId: string): string {
    return join(E2eePhone.paths(this.dir).keys, `${itemId}.key`);
  }
  #refreshFile(kind: GroupKind): string {
    return join(E2eePhone.paths(this.dir).refresh, `${kind}.kp`);
  }

  async #persistGroup(kind: GroupKind, g: GroupRuntime): Promise<void> {
    await this.fs.writeFileAtomic(
      this.#groupFile(kind),
      encodePhoneState(g.state.groupContext.epoch, g.digests, encodeState(this.p, g.state)),
      `phone-group-${kind}`,
    );
  }

  // ---- handshakes ---------------------------------------------------------------------

  /** Process one hub handshake (commit or refresh Welcome) for `kind` in memory. */
  async #process(
    kind: GroupKind,
    g: GroupRuntime,
    handshake: Uint8Array,
    expectEpoch: bigint,
  ): Promise<GroupRuntime> {
    const cur = g.state.groupContext.epoch;
    const dg = digestOf(handshake);
    const known = g.digests.some((d) => Buffer.from(d).equals(dg));
    const last = g.digests.at(-1);
    if (expectEpoch === cur && last !== undefined && Buffer.from(last).equals(dg)) {
      // Already in this epoch through this very handshake (catch-up came first).
      return g;
    }
    if (expectEpoch <= cur) {
      if (known) {
        throw new PhoneError(
          'EREPLAYED_COMMIT',
          `${kind}: the commit for epoch ${expectEpoch} was already applied (replayed or late); its keys are gone`,
          {
            details: { group: kind, epoch: expectEpoch.toString(), current: cur.toString() },
          },
        );
      }
      if (expectEpoch === cur)
        throw new PhoneError(
          'EMLS_FORK',
          `${kind}: a different commit for the current epoch ${cur}: hub and phone have forked`,
        );
      throw new PhoneError(
        'ESTALE_EPOCH',
        `${kind}: item from epoch ${expectEpoch}, phone is at epoch ${cur}; past-epoch keys are deleted`,
        {
          details: { group: kind, epoch: expectEpoch.toString(), current: cur.toString() },
        },
      );
    }
    if (expectEpoch > cur + 1n) {
      throw new PhoneError(
        'EEPOCH_GAP',
        `${kind}: item from epoch ${expectEpoch}, phone is at ${cur}: ${expectEpoch - cur - 1n} commit(s) missing; send a heartbeat to catch up`,
        {
          details: { group: kind, epoch: expectEpoch.toString(), current: cur.toString() },
        },
      );
    }
    const m = decodeMessage(this.p, handshake);
    let next: ClientState;
    let consumed: Uint8Array[] = [];
    try {
      if (m?.wireformat === 'mls_private_message') {
        const r = await this.p.mls.processPrivateMessage(
          g.state,
          m.privateMessage,
          this.p.mls.emptyPskIndex,
          this.p.cs,
        );
        if (r.kind !== 'newState')
          throw new PhoneError(
            'EMLS_REJECTED',
            `${kind}: expected a commit, got an application message`,
          );
        consumed = r.consumed;
        next = r.newState;
      } else if (m?.wireformat === 'mls_welcome') {
        const raw = await this.fs.readIfExists(this.#refreshFile(kind));
        if (raw === undefined)
          throw new PhoneError(
            'EMLS_REJECTED',
            `${kind}: a Welcome arrived but no refresh was pending`,
          );
        const rr = RefreshRecord.parse(JSON.parse(raw.toString('utf8')));
        const kpMsg = decodeMessage(this.p, unb64(rr.publicPackage));
        if (kpMsg?.wireformat !== 'mls_key_package')
          throw new PhoneError('EMLS_STATE_CORRUPT', 'refresh key package corrupt');
        const priv: PrivateKeyPackage = {
          initPrivateKey: unb64(rr.privatePackage.initPrivateKey),
          hpkePrivateKey: unb64(rr.privatePackage.hpkePrivateKey),
          signaturePrivateKey: unb64(rr.privatePackage.signaturePrivateKey),
        };
        next = await this.p.mls.joinGroup(
          m.welcome,
          kpMsg.keyPackage,
          priv,
          this.p.mls.emptyPskIndex,
          this.p.cs,
          undefined,
          undefined,
          this.config,
        );
        if (
          !Buffer.from(next.groupContext.groupId).equals(Buffer.from(g.state.groupContext.groupId))
        ) {
          throw new PhoneError('EMLS_REJECTED', `${kind}: the Welcome is for another group`);
        }
      } else {
        throw new PhoneError(
          'EMLS_REJECTED',
          `${kind}: handshake is neither a commit nor a Welcome`,
        );
      }
    } catch (e) {
      if (e instanceof PhoneError) throw e;
      throw new PhoneError('EMLS_REJECTED', `${kind}: hub handshake rejected: ${reasonOf(e)}`, {
        cause: e,
      });
    }
    if (next.groupContext.epoch !== expectEpoch) {
      throw new PhoneError(
        'EHEADER_TAMPERED',
        `${kind}: handshake leads to epoch ${next.groupContext.epoch}, header says ${expectEpoch}`,
      );
    }
    return { state: next, digests: [...g.digests, dg].slice(-REMEMBERED_HANDSHAKES), consumed };
  }

  async #merge(kind: GroupKind, next: GroupRuntime, wasWelcome: boolean): Promise<void> {
    await this.#persistGroup(kind, next);
    if (wasWelcome) await this.fs.remove(this.#refreshFile(kind), `phone-refresh-${kind}`);
    this.#groups.set(kind, { state: forgetPastEpochs(this.p, next.state), digests: next.digests });
    zeroAll(this.p, next.consumed ?? []);
  }

  /**
   * Accept an item header: process its handshake for this phone, unwrap the
   * content key, persist key then state. Idempotent for an item already
   * accepted (resumes after a crash).
   */
  acceptHeader(header: ParsedHeader): Promise<Buffer> {
    return this.#mutex.run(async () => {
      const kind = GROUP_FOR_ITEM[header.core.kind];
      const g = this.#groups.get(kind) as GroupRuntime;
      const myGroup = Buffer.from(g.state.groupContext.groupId);
      const idx = header.core.recipients.findIndex((r) => myGroup.equals(Buffer.from(r.groupId)));
      const itemId = Buffer.from(header.core.itemId).toString('hex');
      if (idx < 0)
        throw new PhoneError(
          'ENOT_RECIPIENT',
          `item ${itemId} is not sealed for this phone (removed, or another hub)`,
        );
      const r = header.core.recipients[idx] as (typeof header.core.recipients)[number];
      const existing = await this.#readKey(itemId);
      if (existing !== undefined) {
        // Crash between the key and the state write: finish the state.
        if (g.state.groupContext.epoch < r.epoch) {
          const next = await this.#process(kind, g, r.handshake, r.epoch);
          await this.#merge(
            kind,
            next,
            decodeMessage(this.p, r.handshake)?.wireformat === 'mls_welcome',
          );
        }
        return Buffer.from(unb64(existing.cek));
      }
      const next = await this.#process(kind, g, r.handshake, r.epoch);
      const wrapKey = await itemWrapKey(this.p, next.state, header.core.itemId);
      const cek = unwrapContentKey(wrapKey, header, idx);
      wrapKey.fill(0);
      if (!cek.ok) throw containerError(cek);
      const rec: KeyRecord = {
        itemId,
        group: kind,
        epoch: r.epoch.toString(),
        cek: b64(cek.value),
        complete: false,
      };
      await this.fs.writeFileAtomic(this.#keyFile(itemId), JSON.stringify(rec), 'phone-item-key');
      if (next !== g)
        await this.#merge(
          kind,
          next,
          decodeMessage(this.p, r.handshake)?.wireformat === 'mls_welcome',
        );
      return cek.value;
    });
  }

  async #readKey(itemId: string): Promise<KeyRecord | undefined> {
    const raw = await this.fs.readIfExists(this.#keyFile(itemId));
    if (raw === undefined) return undefined;
    try {
      return KeyRecord.parse(JSON.parse(raw.toString('utf8')));
    } catch (e) {
      throw new PhoneError('EMLS_STATE_CORRUPT', `key record ${itemId} is corrupt`, { cause: e });
    }
  }

  /** The stored content key of an item (for the phone's own library), if any. */
  async itemKey(itemId: string): Promise<Buffer | undefined> {
    const k = await this.#readKey(itemId);
    return k === undefined ? undefined : Buffer.from(unb64(k.cek));
  }

  /** Item ids whose keys are durable and marked complete (acknowledged to the hub). */
  async acknowledgedItems(): Promise<string[]> {
    const out: string[] = [];
    let names: string[] = [];
    try {
      names = await readdir(E2eePhone.paths(this.dir).keys);
    } catch {
      /* none */
    }
    for (const n of names.filter((x) => x.endsWith('.key'))) {
      const k = await this.#readKey(n.slice(0, -4));
      if (k?.complete === true) out.push(k.itemId);
    }
    return out.sort();
  }

  /** Mark an item as durably held (its ciphertext is stored by the caller): it will be acked to the hub. */
  async acknowledge(itemId: string): Promise<void> {
    const k = await this.#readKey(itemId);
    if (k === undefined) throw new PhoneError('ENOT_RECIPIENT', `no key for item ${itemId}`);
    if (k.complete) return;
    await this.fs.writeFileAtomic(
      this.#keyFile(itemId),
      JSON.stringify({ ...k, complete: true }),
      'phone-item-ack',
    );
  }

  /** Delete an item's key (the phone deleted the clip). */
  async forgetItem(itemId: string): Promise<void> {
    await this.fs.remove(this.#keyFile(itemId), 'phone-item-forget');
  }

  /** A streaming reader for one item: push bytes as they arrive. */
  openItem(): PhoneItemReader {
    return new PhoneItemReader(this);
  }

  /** Decrypt a whole item (header processed, key persisted). */
  async decryptItem(bytes: Uint8Array): Promise<OpenedItem> {
    const r = this.openItem();
    await r.push(bytes);
    return r.finish();
  }

  /** Decrypt an item whose key this phone already holds (its local library), without MLS. */
  async decryptStored(bytes: Uint8Array): Promise<OpenedItem> {
    const reader = new ContainerReader();
    const first = reader.push(bytes);
    if (!first.ok) throw containerError(first);
    const header = reader.header;
    if (header === undefined)
      throw new ContainerError('EITEM_TRUNCATED', 'item shorter than its header');
    const itemId = Buffer.from(header.core.itemId).toString('hex');
    const key = await this.itemKey(itemId);
    if (key === undefined)
      throw new PhoneError('ENOT_RECIPIENT', `no stored key for item ${itemId}`);
    reader.setKey(key);
    const rest = reader.push(new Uint8Array(0));
    if (!rest.ok) throw containerError(rest);
    const fin = reader.finish();
    if (!fin.ok) throw containerError(fin);
    const chunks = [...first.value, ...rest.value].flatMap((e) =>
      e.type === 'chunk' ? [e.plaintext] : [],
    );
    return { header, itemId, plaintext: Buffer.concat(chunks), trailer: fin.value };
  }

  // ---- config group: heartbeats and requests ----------------------------------------

  async #seal(msg: ConfigMessage): Promise<Uint8Array> {
    return this.#mutex.run(async () => {
      const g = this.#groups.get('config') as GroupRuntime;
      const r = await this.p.mls.createApplicationMessage(
        g.state,
        encodeConfigMessage(msg),
        this.p.cs,
      );
      const next = { state: r.newState, digests: g.digests };
      // The advanced sender ratchet is durable before the message leaves.
      await this.#persistGroup('config', next);
      this.#groups.set('config', next);
      zeroAll(this.p, r.consumed);
      return encodeMessage(this.p, {
        version: 'mls10',
        wireformat: 'mls_private_message',
        privateMessage: r.privateMessage,
      });
    });
  }

  /** Send any config message (e.g. `app` with topic "wifi-credentials"). */
  send(msg: ConfigMessage): Promise<Uint8Array> {
    return this.#seal(msg);
  }

  /**
   * A heartbeat: epochs seen, per-epoch checks, durable acks, and (optionally)
   * fresh key packages for refresh by re-add. The refresh private keys are
   * durable before the heartbeat leaves.
   */
  async heartbeat(opts: { refresh?: readonly GroupKind[] } = {}): Promise<Uint8Array> {
    const epochs: Partial<Record<GroupKind, string>> = {};
    const checks: Partial<Record<GroupKind, string>> = {};
    for (const kind of GROUP_KINDS) {
      const st = (this.#groups.get(kind) as GroupRuntime).state;
      epochs[kind] = st.groupContext.epoch.toString();
      checks[kind] = b64(await epochCheck(this.p, st));
    }
    const refresh: { group: GroupKind; keyPackage: string }[] = [];
    for (const kind of opts.refresh ?? []) {
      if (kind !== 'motion' && kind !== 'thumbnail' && kind !== 'livestream')
        throw new ValidationError(`refresh by re-add is offered for item groups only, not ${kind}`);
      const kp = await newKeyPackage(this.p, this.signing, this.now());
      const rec = {
        publicPackage: b64(encodeKeyPackageMessage(this.p, kp.publicPackage)),
        privatePackage: {
          initPrivateKey: b64(kp.privatePackage.initPrivateKey),
          hpkePrivateKey: b64(kp.privatePackage.hpkePrivateKey),
          signaturePrivateKey: b64(kp.privatePackage.signaturePrivateKey),
        },
      };
      await this.fs.writeFileAtomic(
        this.#refreshFile(kind),
        JSON.stringify(rec),
        `phone-refresh-${kind}`,
      );
      refresh.push({ group: kind, keyPackage: rec.publicPackage });
    }
    this.#hbSeq += 1;
    return this.#seal({
      t: 'heartbeat',
      seq: this.#hbSeq,
      sentAt: this.now(),
      epochs,
      checks,
      acks: (await this.acknowledgedItems())
        .filter((id) => !this.#confirmedAcks.has(id))
        .slice(0, 1000),
      refresh,
    });
  }

  /** Ask the hub (admin only) for an invite to add another phone. */
  requestInvite(): Promise<Uint8Array> {
    const requestId = randomBytes(8).toString('hex');
    this.#pendingRequests.add(requestId);
    return this.#seal({ t: 'invite-request', requestId });
  }

  /** Ask the hub (admin only) to remove a phone. */
  requestRemove(phoneId: string): Promise<Uint8Array> {
    const requestId = randomBytes(8).toString('hex');
    this.#pendingRequests.add(requestId);
    return this.#seal({ t: 'remove-request', requestId, phoneId });
  }

  /**
   * Handle one MLS message from the hub (config or notification group). A
   * heartbeat-ack's catch-up handshakes are applied in order; a desync report
   * throws `DesyncError` (after applying what could be applied).
   */
  async receive(bytes: Uint8Array): Promise<Inbound> {
    const m = decodeMessage(this.p, bytes);
    if (m?.wireformat !== 'mls_private_message')
      throw new ValidationError('hub message is not an MLS private message');
    const plain = await this.#mutex.run(async () => {
      const gid = Buffer.from(m.privateMessage.groupId);
      const kind = (['config', 'notification'] as const).find((k) =>
        gid.equals(Buffer.from(this.groupId(k))),
      );
      if (kind === undefined)
        throw new PhoneError('ENOT_RECIPIENT', 'message for a group this phone is not in');
      const g = this.#groups.get(kind) as GroupRuntime;
      let r;
      try {
        r = await this.p.mls.processPrivateMessage(
          g.state,
          m.privateMessage,
          this.p.mls.emptyPskIndex,
          this.p.cs,
          () => 'reject',
        );
      } catch (e) {
        throw new PhoneError('EMLS_REJECTED', `${kind} message rejected: ${reasonOf(e)}`, {
          cause: e,
        });
      }
      if (r.kind !== 'applicationMessage')
        throw new PhoneError('EMLS_REJECTED', `unexpected handshake in the ${kind} group`);
      const next = { state: r.newState, digests: g.digests };
      await this.#persistGroup(kind, next);
      this.#groups.set(kind, {
        state: forgetPastEpochs(this.p, next.state),
        digests: next.digests,
      });
      zeroAll(this.p, r.consumed);
      return r.message;
    });
    const d = decodeConfigMessage(plain);
    if (!d.ok) throw new ValidationError(d.reason);
    const msg = d.value;
    switch (msg.t) {
      case 'heartbeat-ack':
        return this.#onAck(msg);
      case 'invite':
        this.#pendingRequests.delete(msg.requestId);
        return { kind: 'invite', invite: msg };
      case 'removed':
        this.#pendingRequests.delete(msg.requestId);
        return { kind: 'removed', phoneId: msg.phoneId, requestId: msg.requestId };
      case 'request-failed':
        this.#pendingRequests.delete(msg.requestId);
        throw new PhoneError(
          'EREQUEST_FAILED',
          `hub refused request ${msg.requestId}: ${msg.code}: ${msg.message}`,
          { details: { code: msg.code } },
        );
      case 'notice':
        return { kind: 'notice', notice: msg };
      case 'app':
        return { kind: 'app', topic: msg.topic, body: unb64(msg.body) };
      case 'heartbeat':
      case 'invite-request':
      case 'remove-request':
        throw new PhoneError('EMLS_REJECTED', `the hub may not send "${msg.t}"`);
    }
  }

  async #onAck(ack: HeartbeatAckMessage): Promise<Inbound> {
    let caughtUp = 0;
    await this.#mutex.run(async () => {
      for (const c of ack.catchUp) {
        const g = this.#groups.get(c.group) as GroupRuntime;
        const epoch = BigInt(c.epoch);
        if (epoch <= g.state.groupContext.epoch) continue; // already there (e.g. the item arrived meanwhile)
        const hs = unb64(c.handshake);
        const next = await this.#process(c.group, g, hs, epoch);
        await this.#merge(c.group, next, decodeMessage(this.p, hs)?.wireformat === 'mls_welcome');
        caughtUp += 1;
      }
    });
    // After catch-up, detect any remaining disagreement ourselves too.
    const reports: DesyncReport[] = [...ack.desync];
    for (const kind of GROUP_KINDS) {
      const hubEpoch = ack.epochs[kind];
      if (hubEpoch === undefined) continue;
      const mine = this.epoch(kind);
      if (BigInt(hubEpoch) < mine && !reports.some((r) => r.group === kind)) {
        reports.push({
          group: kind,
          phoneEpoch: mine.toString(),
          hubEpoch,
          reason: 'hub is behind the phone (hub state lost or rolled back)',
        });
      }
    }
    if (reports.length > 0) throw new DesyncError(reports);
    for (const id of ack.acknowledged) this.#confirmedAcks.add(id);
    return { kind: 'heartbeat-ack', ack, caughtUp, confirmedAcks: ack.acknowledged };
  }
}

/** Streams one item through the phone: header -> MLS -> key -> chunks. */
export class PhoneItemReader {
  readonly #phone: E2eePhone;
  readonly #reader = new ContainerReader();
  #chunks: Buffer[] = [];
  #keyed = false;

  constructor(phone: E2eePhone) {
    this.#phone = phone;
  }

  get header(): ParsedHeader | undefined {
    return this.#reader.header;
  }

  /** Feed bytes; returns the events decrypted so far (chunks in order). */
  async push(bytes: Uint8Array): Promise<ReaderEvent[]> {
    const first = this.#reader.push(bytes);
    if (!first.ok) throw containerError(first);
    const events = [...first.value];
    if (!this.#keyed && this.#reader.header !== undefined) {
      const cek = await this.#phone.acceptHeader(this.#reader.header);
      this.#reader.setKey(cek);
      this.#keyed = true;
      const more = this.#reader.push(new Uint8Array(0));
      if (!more.ok) throw containerError(more);
      events.push(...more.value);
    }
    for (const e of events) if (e.type === 'chunk') this.#chunks.push(e.plaintext);
    return events;
  }

  /** The byte stream ended: returns the item or throws (truncated, tampered...). */
  finish(): OpenedItem {
    const fin = this.#reader.finish();
    if (!fin.ok) throw containerError(fin);
    const header = this.#reader.header as ParsedHeader;
    return {
      header,
      itemId: Buffer.from(header.core.itemId).toString('hex'),
      plaintext: Buffer.concat(this.#chunks),
      trailer: fin.value,
    };
  }
}

export type { KeyPackage };
