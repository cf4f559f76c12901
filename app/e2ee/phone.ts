/**
 * The companion side of Vigil's E2EE (never imports firmware/): joined group
 * states, hub handshakes, item decryption. The files live in phone-store.ts;
 * the config-group conversation (heartbeats, catch-up, admin requests) in
 * config-conversation.ts.
 *
 * Item path order: process the header's handshake in memory -> unwrap the
 * content key (header authenticated) -> write the item key -> write the new
 * group state (atomic replace: the new state is durable before the old one is
 * gone) -> merge and forget the past epoch -> only then acknowledge.
 */
import type { ClientConfig, ClientState, KeyPackage, PrivateKeyPackage } from 'ts-mls';
import { createHash } from 'node:crypto';
import {
  containerError,
  ContainerError,
  ContainerReader,
  unwrapContentKey,
  type ParsedHeader,
  type ReaderEvent,
  type Trailer,
} from '../../protocol/container.js';
import { b64, unb64, type ConfigMessage } from '../../protocol/e2ee-frames.js';
import { VigilError, reasonOf } from '../../base/errors.js';
import {
  GROUP_FOR_ITEM,
  GROUP_KINDS,
  ITEM_GROUPS,
  LazyMlsProfile,
  PinnedAuthService,
  clientConfig,
  decodeMessage,
  encodeState,
  forgetPastEpochs,
  hubIdentity,
  itemWrapKey,
  pskIndexOf,
  zeroAll,
  type GroupKind,
  type MlsProfile,
  type SigningIdentity,
} from '../../protocol/mls-profile.js';
import { Mutex } from '../../base/async.js';
import { ConfigConversation } from './config-conversation.js';
import type { Inbound } from './config-conversation.js';
import {
  PhoneError,
  PhoneStore,
  REMEMBERED_HANDSHAKES,
  phonePaths,
  readPhoneFile,
} from './phone-store.js';
import type { GroupRuntime, KeyRecord, PhoneFile, PhoneFs } from './phone-store.js';

// The phone API as it was before the store and the config conversation were split out.
export {
  DesyncError,
  PhoneError,
  PhoneFile,
  REMEMBERED_HANDSHAKES,
  decodePhoneState,
  encodePhoneState,
} from './phone-store.js';
export type { PhoneErrorCode, PhoneFs } from './phone-store.js';
export type { Inbound } from './config-conversation.js';

function digestOf(handshake: Uint8Array): Uint8Array {
  return createHash('sha256').update(handshake).digest();
}

export interface PhoneOptions {
  readonly dir: string;
  readonly fs: PhoneFs;
  readonly profile: MlsProfile | LazyMlsProfile;
  readonly now?: () => number;
}

/** An item read to its end, without its plaintext (a streaming consumer took the chunks). */
export interface ItemEnd {
  readonly header: ParsedHeader;
  readonly itemId: string;
  readonly trailer: Trailer;
}

export interface OpenedItem extends ItemEnd {
  readonly plaintext: Buffer;
}

export interface OpenItemOptions {
  /**
   * Keep each chunk's plaintext so `finish()` can return the item whole (the default).
   * False: a streaming reader — the caller consumes the chunks `push` returns and ends
   * with `end()`; nothing is kept or joined.
   */
  readonly keepPlaintext?: boolean;
}

export class E2eePhone {
  readonly dir: string;
  readonly fs: PhoneFs;
  readonly p: MlsProfile;
  readonly now: () => number;
  readonly info: PhoneFile;
  readonly auth: PinnedAuthService;
  readonly config: ClientConfig;
  readonly signing: SigningIdentity;
  readonly #store: PhoneStore;
  readonly #groups = new Map<GroupKind, GroupRuntime>();
  readonly #mutex = new Mutex();
  readonly #conversation: ConfigConversation;
  /** Per group: how far catch-up may go (see ConversationHost.catchUpLimit). */
  readonly #gapLimit = new Map<GroupKind, bigint>();

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
    this.#store = new PhoneStore(o.dir, o.fs, p);
    this.#conversation = new ConfigConversation({
      p,
      store: this.#store,
      signing: this.signing,
      now: this.now,
      groups: this.#groups,
      mutex: this.#mutex,
      epoch: (kind) => this.epoch(kind),
      groupId: (kind) => this.groupId(kind),
      applyHandshake: async (kind, g, handshake, epoch) => {
        const next = await this.#process(kind, g, handshake, epoch);
        await this.#merge(
          kind,
          next,
          decodeMessage(this.p, handshake)?.wireformat === 'mls_welcome',
        );
      },
      acknowledgedItems: () => this.acknowledgedItems(),
      catchUpLimit: (kind) => this.#gapLimit.get(kind),
      clearCatchUpLimit: (kind) => this.#gapLimit.delete(kind),
    });
  }

  static paths(dir: string): { phone: string; groups: string; keys: string; refresh: string } {
    return phonePaths(dir);
  }

  /**
   * Open the phone state in `dir`. Returns undefined when not paired; any
   * half-made pairing state is wiped.
   */
  static async open(o: PhoneOptions): Promise<E2eePhone | undefined> {
    const p = o.profile instanceof LazyMlsProfile ? await o.profile.get() : o.profile;
    const info = await readPhoneFile(o);
    if (info === undefined) return undefined;
    const ph = new E2eePhone(o, p, info);
    for (const [kind, g] of await ph.#store.loadGroups(ph.config)) ph.#groups.set(kind, g);
    return ph;
  }

  /** Persist a freshly paired phone: groups first, phone.json last (the commit point). */
  static async persistPairing(
    o: PhoneOptions,
    info: PhoneFile,
    states: ReadonlyMap<GroupKind, ClientState>,
  ): Promise<E2eePhone> {
    const p = o.profile instanceof LazyMlsProfile ? await o.profile.get() : o.profile;
    const ph = new E2eePhone(o, p, info);
    for (const [kind, g] of await ph.#store.persistPairing(info, states, ph.config))
      ph.#groups.set(kind, g);
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
      // catch-up (the next heartbeat-ack) must stop just below this item: it carries the next commit
      const lim = this.#gapLimit.get(kind);
      if (lim === undefined || expectEpoch - 1n < lim) this.#gapLimit.set(kind, expectEpoch - 1n);
      // A reader that meets a gap holds the items after it, whatever their group (the sync
      // keeps the relay's order), and their headers carry their own commits: catching the
      // other groups up past them would leave those items unreadable (their keys are gone).
      // So the other groups stay where they are until this catch-up is answered; a gap of
      // their own is reported by their first held item, on a later pass.
      for (const other of new Set(Object.values(GROUP_FOR_ITEM)))
        if (other !== kind && !this.#gapLimit.has(other))
          this.#gapLimit.set(
            other,
            (this.#groups.get(other) as GroupRuntime).state.groupContext.epoch,
          );
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
        // the group's own resumption PSK: a pathless advance (PATHLESS_ADVANCE_CAPABILITY)
        const r = await this.p.mls.processPrivateMessage(
          g.state,
          m.privateMessage,
          pskIndexOf(this.p, g.state, []),
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
        const rr = await this.#store.readRefresh(kind);
        if (rr === undefined)
          throw new PhoneError(
            'EMLS_REJECTED',
            `${kind}: a Welcome arrived but no refresh was pending`,
          );
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
    await this.#store.persistGroup(kind, next);
    if (wasWelcome) await this.#store.removeRefresh(kind);
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
      // Its own group first; a thumbnail may ride in its clip's epoch (ITEM_GROUPS).
      let kind: GroupKind = GROUP_FOR_ITEM[header.core.kind];
      let idx = -1;
      for (const k of ITEM_GROUPS[header.core.kind]) {
        const mine = Buffer.from((this.#groups.get(k) as GroupRuntime).state.groupContext.groupId);
        idx = header.core.recipients.findIndex((r) => mine.equals(Buffer.from(r.groupId)));
        if (idx >= 0) {
          kind = k;
          break;
        }
      }
      const g = this.#groups.get(kind) as GroupRuntime;
      const itemId = Buffer.from(header.core.itemId).toString('hex');
      if (idx < 0)
        throw new PhoneError(
          'ENOT_RECIPIENT',
          `item ${itemId} is not sealed for this phone (removed, or another hub)`,
        );
      const r = header.core.recipients[idx] as (typeof header.core.recipients)[number];
      // An item of the group's current or an earlier epoch may be one this phone accepted
      // (opened again): its stored key answers. An item of a later epoch has no key that
      // counts yet: at most a crash between the key and the state write left one, and
      // processing the same commit from the same state unwraps the same content key, so
      // the path below writes that key again and finishes the state (one file operation
      // fewer per new item: no failed read of its key file).
      if (r.epoch <= g.state.groupContext.epoch) {
        const existing = await this.#store.readKey(itemId);
        if (existing !== undefined) return Buffer.from(unb64(existing.cek));
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
      await this.#store.writeKey(itemId, rec, 'phone-item-key');
      if (next !== g)
        await this.#merge(
          kind,
          next,
          decodeMessage(this.p, r.handshake)?.wireformat === 'mls_welcome',
        );
      return cek.value;
    });
  }

  /** The stored content key of an item (for the phone's own library), if any. */
  async itemKey(itemId: string): Promise<Buffer | undefined> {
    const k = await this.#store.readKey(itemId);
    return k === undefined ? undefined : Buffer.from(unb64(k.cek));
  }

  /** Item ids whose keys are durable and marked complete (acknowledged to the hub). */
  async acknowledgedItems(): Promise<string[]> {
    const out: string[] = [];
    for (const id of await this.#store.keyIds()) {
      const k = await this.#store.readKey(id);
      if (k?.complete === true) out.push(k.itemId);
    }
    return out.sort();
  }

  /** Mark an item as durably held (its ciphertext is stored by the caller): it will be acked to the hub. */
  async acknowledge(itemId: string): Promise<void> {
    const k = await this.#store.readKey(itemId);
    if (k === undefined) throw new PhoneError('ENOT_RECIPIENT', `no key for item ${itemId}`);
    if (k.complete) return;
    await this.#store.writeKey(itemId, { ...k, complete: true }, 'phone-item-ack');
  }

  /** Delete an item's key (the phone deleted the clip). */
  async forgetItem(itemId: string): Promise<void> {
    await this.#store.removeKey(itemId);
  }

  /** A streaming reader for one item: push bytes as they arrive. */
  openItem(opts: OpenItemOptions = {}): PhoneItemReader {
    return new PhoneItemReader(this, opts.keepPlaintext ?? true);
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

  // ---- config group: heartbeats and requests (config-conversation.ts) -----------------

  /** Send any config message (e.g. `app` with topic "wifi-credentials"). */
  send(msg: ConfigMessage): Promise<Uint8Array> {
    return this.#conversation.send(msg);
  }

  /**
   * A heartbeat: epochs seen, per-epoch checks, durable acks, and (optionally)
   * fresh key packages for refresh by re-add. The refresh private keys are
   * durable before the heartbeat leaves.
   */
  heartbeat(opts: { refresh?: readonly GroupKind[] } = {}): Promise<Uint8Array> {
    return this.#conversation.heartbeat(opts);
  }

  /** Ask the hub (admin only) for an invite to add another phone. */
  requestInvite(): Promise<Uint8Array> {
    return this.#conversation.requestInvite();
  }

  /** Ask the hub (admin only) to remove a phone. */
  requestRemove(phoneId: string): Promise<Uint8Array> {
    return this.#conversation.requestRemove(phoneId);
  }

  /**
   * Handle one MLS message from the hub (config or notification group). A
   * heartbeat-ack's catch-up handshakes are applied in order; a desync report
   * throws `DesyncError` (after applying what could be applied).
   */
  receive(bytes: Uint8Array): Promise<Inbound> {
    return this.#conversation.receive(bytes);
  }
}

/** Streams one item through the phone: header -> MLS -> key -> chunks. */
export class PhoneItemReader {
  readonly #phone: E2eePhone;
  readonly #reader = new ContainerReader();
  /** Undefined: a streaming reader (chunks are not kept). */
  readonly #chunks: Buffer[] | undefined;
  #keyed = false;

  constructor(phone: E2eePhone, keepPlaintext = true) {
    this.#phone = phone;
    this.#chunks = keepPlaintext ? [] : undefined;
  }

  get header(): ParsedHeader | undefined {
    return this.#reader.header;
  }

  /** Feed bytes; returns the events decrypted so far (chunks in order). */
  async push(bytes: Uint8Array): Promise<ReaderEvent[]> {
    const first = this.#reader.push(bytes);
    if (!first.ok) throw containerError(first);
    const events = first.value;
    if (!this.#keyed && this.#reader.header !== undefined) {
      const cek = await this.#phone.acceptHeader(this.#reader.header);
      this.#reader.setKey(cek);
      this.#keyed = true;
      const more = this.#reader.push(new Uint8Array(0));
      if (!more.ok) throw containerError(more);
      events.push(...more.value);
    }
    if (this.#chunks !== undefined)
      for (const e of events) if (e.type === 'chunk') this.#chunks.push(e.plaintext);
    return events;
  }

  /** The byte stream ended: returns the item's header and trailer or throws (truncated, tampered...). */
  end(): ItemEnd {
    const fin = this.#reader.finish();
    if (!fin.ok) throw containerError(fin);
    const header = this.#reader.header as ParsedHeader;
    return { header, itemId: Buffer.from(header.core.itemId).toString('hex'), trailer: fin.value };
  }

  /** The byte stream ended: returns the item whole or throws (truncated, tampered...). */
  finish(): OpenedItem {
    if (this.#chunks === undefined)
      throw new VigilError('ESTREAMING', 'a streaming reader keeps no plaintext: use end()');
    return { ...this.end(), plaintext: Buffer.concat(this.#chunks) };
  }
}

export type { KeyPackage };
