/**
 * The hub side of Vigil's E2EE: one set of five MLS groups per paired phone
 * (motion, thumbnail, livestream, config, notification), the hub as the only
 * committer, an epoch per item, the crash-safe commit journal, and admin
 * add/remove of phones. Heartbeats (desync detection, catch-up, acks) are
 * answered in heartbeat.ts.
 *
 * Durable order per item (`advance`): create commits (memory) -> journal record
 * (the handshakes only, no secrets) -> per phone: replace its group file, then
 * merge in memory and forget the past epoch. Two durable writes per item with
 * one phone (issue #19; was three: the record carried the next states and was
 * rewritten without them). A group file is the only copy of a group's secrets;
 * a journal entry above its phone's group file epoch was never applied and is
 * dropped on open (docs/decisions.md "The epoch advance: two durable writes").
 * Every write goes through DurableFs, so the crash suite can stop the process
 * at each step.
 */
import type { ClientConfig, ClientState, KeyPackage } from 'ts-mls';
import { randomBytes } from 'node:crypto';
import type { DurableFs } from '../../hw/os/fs.js';
import { ValidationError, VigilError, reasonOf } from '../../base/errors.js';
import {
  b64,
  decodeConfigMessage,
  encodeConfigMessage,
  unb64,
  type ConfigMessage,
  type DesyncReport,
  type InviteMessage,
} from '../../protocol/e2ee-frames.js';
import {
  GROUP_KINDS,
  LazyMlsProfile,
  acceptsPathlessAdvance,
  pathlessAdvanceProposal,
  PinnedAuthService,
  clientConfig,
  decodeMessage,
  decodeState,
  encodeMessage,
  encodeState,
  forgetPastEpochs,
  hubIdentity,
  itemWrapKey,
  leafIndexOf,
  newSigningIdentity,
  zeroAll,
  type GroupKind,
  type MlsProfile,
  type PinnedCredential,
  type SigningIdentity,
} from '../../protocol/mls-profile.js';
import { SILENT, type Logger } from '../../base/logger.js';
import {
  Journal,
  MAX_JOURNAL_RECORDS,
  isApplied,
  stripStates,
  type JournalRecord,
} from './journal.js';
import { HeartbeatHandler } from './heartbeat.js';
import {
  HubStore,
  type HubFile,
  type InviteRecord,
  type PhoneRecord,
  type PhoneRuntime,
} from './store.js';
import { Mutex } from '../../base/async.js';

export class MlsHubError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'MlsHubError';
  }
}

/** An invite lives this long (the admin shows it to the new phone at once). */
export const INVITE_TTL_MS = 15 * 60 * 1000;

export interface MlsHubOptions {
  /** Directory for the hub's MLS state (production: `<dataDir>/mls`). */
  readonly dir: string;
  readonly fs: DurableFs;
  readonly deviceId: string;
  readonly profile: MlsProfile | LazyMlsProfile;
  readonly logger?: Logger;
  readonly now?: () => number;
  /** How often an epoch advance carries an UpdatePath; default PATH_EVERY. */
  readonly pathEvery?: PathCadence;
}

/**
 * The post-compromise cadence: an advance carries an UpdatePath at least every
 * `advances` advances of a phone's group (1: every advance, as before) and once the
 * last one is `ms` old. Between them an advance is pathless
 * (docs/decisions.md "Pathless epoch advances").
 */
export interface PathCadence {
  readonly advances: number;
  readonly ms: number;
}

/** Every 10th advance and at least every 10 minutes (the first after a quiet spell heals). */
export const PATH_EVERY: PathCadence = { advances: 10, ms: 10 * 60 * 1000 };

export interface PhoneInfo {
  readonly phoneId: string;
  readonly admin: boolean;
  readonly pairedAt: number;
  readonly credential: PinnedCredential;
}

export interface AdvanceRecipient {
  readonly phoneId: string;
  readonly groupId: Uint8Array;
  readonly epoch: bigint;
  /** Encoded MLSMessage: the commit, or a Welcome after a refresh re-add. */
  readonly handshake: Uint8Array;
}

export interface AdvanceResult {
  readonly seq: number;
  readonly recipients: readonly AdvanceRecipient[];
  /** Exporter-derived wrap keys, one per recipient (caller zeroes them). */
  readonly wrapKeys: readonly Uint8Array[];
}

export interface ConfigOutcome {
  readonly phoneId: string;
  readonly message: ConfigMessage;
  /** Encoded MLS messages to send back to that phone (config group). */
  readonly replies: readonly Uint8Array[];
  /** Items every current phone has acknowledged: the hub may delete local copies. */
  readonly acknowledged: readonly string[];
  readonly desync: readonly DesyncReport[];
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export class MlsHub {
  readonly deviceId: string;
  readonly p: MlsProfile;
  readonly store: HubStore;
  readonly journal: Journal;
  readonly log: Logger;
  readonly now: () => number;
  readonly auth: PinnedAuthService;
  readonly config: ClientConfig;
  readonly signing: SigningIdentity;
  #hub: HubFile;
  #phones = new Map<string, PhoneRuntime>();
  #pendingRefresh = new Map<string, KeyPackage>();
  /**
   * Per `phoneId/kind`: when the last advance with an UpdatePath was merged and how
   * many pathless ones followed it. In memory only: after a restart the first
   * advance of every group carries a path.
   */
  #lastPath = new Map<string, { at: number; pathless: number }>();
  /** How often an advance carries an UpdatePath (MlsHubOptions.pathEvery). */
  readonly pathEvery: PathCadence;
  #mutex = new Mutex();
  readonly #heartbeats: HeartbeatHandler;

  private constructor(o: MlsHubOptions, p: MlsProfile, hub: HubFile, signing: SigningIdentity) {
    this.deviceId = o.deviceId;
    this.p = p;
    this.store = new HubStore(o.dir, o.fs);
    this.journal = new Journal(this.store.journalDir, o.fs);
    this.log = (o.logger ?? SILENT).child('mls');
    this.now = o.now ?? Date.now;
    this.pathEvery = o.pathEvery ?? PATH_EVERY;
    this.#hub = hub;
    this.signing = signing;
    this.auth = new PinnedAuthService([signing]);
    this.config = clientConfig(p.mls, this.auth);
    this.#heartbeats = new HeartbeatHandler({
      p,
      journal: this.journal,
      auth: this.auth,
      log: this.log,
      now: this.now,
      mutex: this.#mutex,
      phones: this.#phones,
      pendingRefresh: this.#pendingRefresh,
    });
  }

  /** Open (or initialise) the hub state in `dir`, applying any journal record left by a crash. */
  static async open(o: MlsHubOptions): Promise<MlsHub> {
    const every = o.pathEvery ?? PATH_EVERY;
    if (!Number.isInteger(every.advances) || every.advances < 1)
      throw new ValidationError(
        `pathEvery.advances must be a whole number ≥ 1, got ${String(every.advances)}`,
      );
    if (!(every.ms >= 0))
      throw new ValidationError(`pathEvery.ms must be ≥ 0, got ${String(every.ms)}`);
    const p = o.profile instanceof LazyMlsProfile ? await o.profile.get() : o.profile;
    const store = new HubStore(o.dir, o.fs);
    await store.init();
    let hub = await store.readHub();
    if (hub === undefined) {
      const s = await newSigningIdentity(p, hubIdentity(o.deviceId));
      hub = {
        version: 1,
        deviceId: o.deviceId,
        identity: b64(s.identity),
        signaturePublicKey: b64(s.signaturePublicKey),
        signaturePrivateKey: b64(s.signaturePrivateKey),
        phones: [],
        invites: [],
      };
      await store.writeHub(hub);
    } else if (hub.deviceId !== o.deviceId) {
      throw new MlsHubError(
        'EMLS_STATE_CORRUPT',
        `MLS state belongs to device ${hub.deviceId}, not ${o.deviceId}`,
      );
    }
    const signing: SigningIdentity = {
      identity: unb64(hub.identity),
      signaturePublicKey: unb64(hub.signaturePublicKey),
      signaturePrivateKey: unb64(hub.signaturePrivateKey),
    };
    const h = new MlsHub(o, p, hub, signing);
    await h.#recover();
    return h;
  }

  async #recover(): Promise<void> {
    const known = new Set(this.#hub.phones.map((r) => r.phoneId));
    // 1. records that still carry states: written by a hub before the two-write advance
    //    (it journalled the next states first); apply them once, then strip them
    for (const rec of await this.journal.load()) {
      if (isApplied(rec)) continue;
      for (const e of rec.entries) {
        if (e.state === undefined || !known.has(e.phoneId)) continue;
        const cur = await this.store.readGroup(e.phoneId, rec.group);
        if (cur === undefined || cur.epoch < BigInt(e.epoch)) {
          await this.store.writeGroup(e.phoneId, rec.group, BigInt(e.epoch), unb64(e.state));
        }
      }
      await this.journal.write(stripStates(rec), 'mls-journal-applied');
      this.log.info('applied journal record after restart', { seq: rec.seq, group: rec.group });
    }
    // 2. drop group files of phones that never finished pairing (or were removed)
    for (const [phoneId, kind] of await this.store.listGroupFiles()) {
      if (!known.has(phoneId)) await this.store.removeGroup(phoneId, kind);
    }
    // 3. load the phones' groups
    for (const rec of this.#hub.phones) {
      const cred = {
        identity: unb64(rec.identity),
        signaturePublicKey: unb64(rec.signaturePublicKey),
      };
      this.auth.pin(cred);
      const groups = new Map<GroupKind, ClientState>();
      for (const kind of GROUP_KINDS) {
        const f = await this.store.readGroup(rec.phoneId, kind);
        if (f === undefined)
          throw new MlsHubError(
            'EMLS_STATE_CORRUPT',
            `group ${kind} of phone ${rec.phoneId} is missing`,
          );
        const st = decodeState(this.p, f.state, this.config);
        if (st === undefined || st.groupContext.epoch !== f.epoch) {
          throw new MlsHubError(
            'EMLS_STATE_CORRUPT',
            `group ${kind} of phone ${rec.phoneId} does not decode`,
          );
        }
        groups.set(kind, st);
      }
      this.#phones.set(rec.phoneId, { rec, cred, groups, confirmed: new Map() });
    }
    // 4. the journal against the group files
    await this.#reconcileJournal();
  }

  /**
   * Entries the group files do not back, dropped: an entry above its phone's group epoch was
   * never applied (a crash between the record and the group file, or a failed group write)
   * and its handshake never left; of two entries for one phone, group and epoch (a failed
   * group write, then that epoch made again), the later record's is the group file's.
   * Entries of phones no longer paired are left to pruning.
   */
  async #reconcileJournal(): Promise<void> {
    const recs = this.journal.records;
    const later = new Set<string>();
    const kept = new Map<number, JournalRecord['entries']>();
    for (const rec of [...recs].reverse()) {
      kept.set(
        rec.seq,
        rec.entries.filter((e) => {
          const st = this.#phones.get(e.phoneId)?.groups.get(rec.group);
          if (st === undefined) return true;
          const key = `${e.phoneId}/${rec.group}/${e.epoch}`;
          if (BigInt(e.epoch) > st.groupContext.epoch || later.has(key)) return false;
          later.add(key);
          return true;
        }),
      );
    }
    for (const rec of recs) {
      const entries = kept.get(rec.seq) ?? rec.entries;
      if (entries.length === rec.entries.length) continue;
      if (entries.length === 0) await this.journal.remove(rec.seq);
      else await this.journal.write({ ...rec, entries }, 'mls-journal-reconciled');
      this.log.info('dropped unapplied journal entries after restart', {
        seq: rec.seq,
        group: rec.group,
        dropped: rec.entries.length - entries.length,
      });
    }
  }

  // ---- queries -------------------------------------------------------------------

  get phones(): PhoneInfo[] {
    return [...this.#phones.values()].map((ph) => ({
      phoneId: ph.rec.phoneId,
      admin: ph.rec.admin,
      pairedAt: ph.rec.pairedAt,
      credential: ph.cred,
    }));
  }

  get invites(): readonly InviteRecord[] {
    return this.#hub.invites;
  }

  epoch(phoneId: string, kind: GroupKind): bigint {
    const st = this.#phones.get(phoneId)?.groups.get(kind);
    if (st === undefined) throw new MlsHubError('EUNKNOWN_PHONE', `no phone ${phoneId}`);
    return st.groupContext.epoch;
  }

  /** Encoded size of one group state (the "state stays flat" check). */
  stateSize(phoneId: string, kind: GroupKind): number {
    const st = this.#phones.get(phoneId)?.groups.get(kind);
    if (st === undefined) throw new MlsHubError('EUNKNOWN_PHONE', `no phone ${phoneId}`);
    return encodeState(this.p, st).length;
  }

  /** Run `fn` under the state mutex (pairing uses it to commit a new phone). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#mutex.run(fn);
  }

  // ---- the item path ----------------------------------------------------------------

  /**
   * Advance `kind` in every phone's group for one item: fold pending refreshes,
   * journal, persist, merge. Returns the handshakes for the header and the
   * exporter-derived wrap keys for `itemId`.
   */
  advance(kind: GroupKind, itemId: Uint8Array): Promise<AdvanceResult> {
    return this.#mutex.run(async () => {
      const phones = [...this.#phones.values()];
      if (phones.length === 0)
        throw new MlsHubError('ENO_PHONES', 'no paired phone: nothing can be sealed');
      const made: {
        ph: PhoneRuntime;
        next: ClientState;
        handshake: Uint8Array;
        consumed: Uint8Array[];
        /** A commit without an UpdatePath (no fresh entropy): counts toward the next path. */
        pathless: boolean;
      }[] = [];
      for (const ph of phones) {
        const st = ph.groups.get(kind) as ClientState;
        const refreshKey = `${ph.rec.phoneId}/${kind}`;
        const refresh = this.#pendingRefresh.get(refreshKey);
        let next: ClientState;
        let handshake: Uint8Array;
        let consumed: Uint8Array[];
        let pathless = false;
        let refreshed:
          { next: ClientState; handshake: Uint8Array; consumed: Uint8Array[] } | undefined;
        if (refresh !== undefined) {
          refreshed = await this.#refreshCommit(ph, st, refresh).catch((e: unknown) => {
            // A refresh that cannot be committed must not block every later item.
            this.#pendingRefresh.delete(refreshKey);
            this.log.warn('phone refresh rejected; sealing without it', {
              phoneId: ph.rec.phoneId,
              group: kind,
              reason: reasonOf(e),
            });
            return undefined;
          });
        }
        if (refreshed !== undefined) {
          ({ next, handshake, consumed } = refreshed);
        } else {
          pathless = !this.#pathDue(ph, kind, st);
          const r = await this.p.mls.createCommit(
            { state: st, cipherSuite: this.p.cs },
            pathless ? { extraProposals: [pathlessAdvanceProposal(this.p, st)] } : undefined,
          );
          next = r.newState;
          consumed = r.consumed;
          handshake = encodeMessage(this.p, r.commit);
        }
        made.push({ ph, next, handshake, consumed, pathless });
      }
      const seq = this.journal.nextSeq();
      const rec: JournalRecord = {
        v: 1,
        seq,
        itemId: hex(itemId),
        group: kind,
        createdAt: this.now(),
        entries: made.map((m) => ({
          phoneId: m.ph.rec.phoneId,
          epoch: m.next.groupContext.epoch.toString(),
          handshake: b64(m.handshake),
        })),
      };
      // 1. the handshakes, durable before any group file moves: a phone that misses this item
      //    catches up from here. No secrets: the group files are the only copy of those.
      await this.journal.write(rec, 'mls-journal');
      // 2. per phone: its group file, then the merge. A phone whose write failed stays in its
      //    epoch, and its entry leaves the record in memory so no heartbeat sends it (on disk
      //    the entry is dropped on open: #reconcileJournal).
      for (const [i, m] of made.entries()) {
        try {
          await this.store.writeGroup(
            m.ph.rec.phoneId,
            kind,
            m.next.groupContext.epoch,
            encodeState(this.p, m.next),
          );
        } catch (e) {
          this.journal.dropEntries(
            seq,
            made.slice(i).map((x) => x.ph.rec.phoneId),
          );
          throw e;
        }
        m.ph.groups.set(kind, forgetPastEpochs(this.p, m.next));
        zeroAll(this.p, m.consumed);
        this.#pendingRefresh.delete(`${m.ph.rec.phoneId}/${kind}`);
        this.#notePath(m.ph, kind, m.pathless);
        this.log.debug('epoch advanced', {
          group: kind,
          phoneId: m.ph.rec.phoneId,
          epoch: m.next.groupContext.epoch.toString(),
          updatePath: !m.pathless,
        });
      }
      await this.#pruneOverflow();
      const wrapKeys: Uint8Array[] = [];
      for (const m of made)
        wrapKeys.push(await itemWrapKey(this.p, m.ph.groups.get(kind) as ClientState, itemId));
      return {
        seq,
        recipients: made.map((m) => ({
          phoneId: m.ph.rec.phoneId,
          groupId: m.next.groupContext.groupId,
          epoch: m.next.groupContext.epoch,
          handshake: m.handshake,
        })),
        wrapKeys,
      };
    });
  }

  /**
   * Wrap keys for another item in the epoch an earlier advance of `kind`
   * reached (`at`, one entry per recipient), without a commit: a clip's
   * thumbnail rides in its clip's epoch. Only while every current phone's
   * group is still in exactly that epoch (same phones, no later advance);
   * otherwise undefined and the caller advances as usual. Item ids are random
   * per item, so the exported keys differ per item.
   */
  wrapKeysInEpoch(
    kind: GroupKind,
    at: readonly { readonly phoneId: string; readonly epoch: bigint }[],
    itemId: Uint8Array,
  ): Promise<Uint8Array[] | undefined> {
    return this.#mutex.run(async () => {
      if (at.length === 0 || at.length !== this.#phones.size) return undefined;
      const states: ClientState[] = [];
      for (const a of at) {
        const st = this.#phones.get(a.phoneId)?.groups.get(kind);
        if (st?.groupContext.epoch !== a.epoch) return undefined;
        states.push(st);
      }
      const keys: Uint8Array[] = [];
      for (const st of states) keys.push(await itemWrapKey(this.p, st, itemId));
      return keys;
    });
  }

  /**
   * Whether this phone's next advance in `kind` must carry an UpdatePath (fresh
   * X-Wing leaf and path secrets from the hub: post-compromise recovery), or may
   * be a pathless advance (docs/decisions.md "Pathless epoch advances"): a path
   * is due for the first advance after the hub starts, when the phone's leaf does
   * not list PATHLESS_ADVANCE_CAPABILITY, after `pathEvery.advances - 1` pathless
   * ones in a row, and when the last path is `pathEvery.ms` old or older.
   */
  #pathDue(ph: PhoneRuntime, kind: GroupKind, st: ClientState): boolean {
    const last = this.#lastPath.get(`${ph.rec.phoneId}/${kind}`);
    if (last === undefined) return true;
    if (last.pathless + 1 >= this.pathEvery.advances) return true;
    if (this.now() - last.at >= this.pathEvery.ms) return true;
    const leaf = leafIndexOf(st, ph.cred.identity);
    return leaf === undefined || !acceptsPathlessAdvance(st, leaf);
  }

  #notePath(ph: PhoneRuntime, kind: GroupKind, pathless: boolean): void {
    const key = `${ph.rec.phoneId}/${kind}`;
    const last = this.#lastPath.get(key);
    if (!pathless) this.#lastPath.set(key, { at: this.now(), pathless: 0 });
    else if (last !== undefined) last.pathless++;
  }

  /** Remove(phone leaf) + Add(fresh key package): the phone re-joins from the Welcome. */
  async #refreshCommit(
    ph: PhoneRuntime,
    st: ClientState,
    refresh: KeyPackage,
  ): Promise<{ next: ClientState; handshake: Uint8Array; consumed: Uint8Array[] }> {
    const leaf = leafIndexOf(st, ph.cred.identity);
    if (leaf === undefined)
      throw new MlsHubError('EMLS_STATE_CORRUPT', `phone ${ph.rec.phoneId} is not in its group`);
    const r = await this.p.mls.createCommit(
      { state: st, cipherSuite: this.p.cs },
      {
        extraProposals: [
          { proposalType: 'remove', remove: { removed: leaf } },
          { proposalType: 'add', add: { keyPackage: refresh } },
        ],
        ratchetTreeExtension: true,
      },
    );
    if (r.welcome === undefined)
      throw new MlsHubError('EMLS_INTERNAL', 'refresh commit produced no Welcome');
    return {
      next: r.newState,
      consumed: r.consumed,
      handshake: encodeMessage(this.p, {
        version: 'mls10',
        wireformat: 'mls_welcome',
        welcome: r.welcome,
      }),
    };
  }

  async #pruneOverflow(): Promise<void> {
    if (this.journal.size <= MAX_JOURNAL_RECORDS) return; // no sorted copy per advance
    const recs = this.journal.records;
    for (let i = 0; i < recs.length - MAX_JOURNAL_RECORDS; i++) {
      const r = recs[i];
      if (r !== undefined && isApplied(r)) await this.journal.remove(r.seq);
    }
  }

  // ---- pairing support (used by PairingResponder) -----------------------------------

  /** Accepted external PSKs: the device PSK is passed by the responder; invites live here. */
  findInvite(pskId: Uint8Array): InviteRecord | undefined {
    const id = b64(pskId);
    return this.#hub.invites.find((i) => i.pskId === id && i.expiresAt > this.now());
  }

  hasPhone(phoneId: string): boolean {
    return this.#phones.has(phoneId);
  }

  /**
   * Make a paired phone durable: group files first, then hub.json (the commit
   * point). Called by the responder under `exclusive`.
   */
  async commitPairing(args: {
    phoneId: string;
    credential: PinnedCredential;
    groups: Map<GroupKind, ClientState>;
    admin: boolean;
    inviteId?: Uint8Array;
  }): Promise<void> {
    for (const kind of GROUP_KINDS) {
      const st = args.groups.get(kind);
      if (st === undefined) throw new MlsHubError('EMLS_INTERNAL', `pairing lacks group ${kind}`);
      await this.store.writeGroup(
        args.phoneId,
        kind,
        st.groupContext.epoch,
        encodeState(this.p, st),
      );
    }
    const rec: PhoneRecord = {
      phoneId: args.phoneId,
      identity: b64(args.credential.identity),
      signaturePublicKey: b64(args.credential.signaturePublicKey),
      admin: args.admin,
      pairedAt: this.now(),
      groups: Object.fromEntries(
        GROUP_KINDS.map((k) => [k, b64((args.groups.get(k) as ClientState).groupContext.groupId)]),
      ) as Record<GroupKind, string>,
    };
    const inviteId = args.inviteId === undefined ? undefined : b64(args.inviteId);
    const next: HubFile = {
      ...this.#hub,
      phones: [...this.#hub.phones.filter((p) => p.phoneId !== args.phoneId), rec],
      invites: this.#hub.invites.filter((i) => i.pskId !== inviteId && i.expiresAt > this.now()),
    };
    await this.store.writeHub(next);
    this.#hub = next;
    this.auth.pin(args.credential);
    const groups = new Map<GroupKind, ClientState>();
    for (const [k, st] of args.groups)
      groups.set(k, { ...forgetPastEpochs(this.p, st), clientConfig: this.config });
    this.#phones.set(args.phoneId, { rec, cred: args.credential, groups, confirmed: new Map() });
    this.log.info('phone paired', { phoneId: args.phoneId, admin: args.admin });
  }

  // ---- admin: invites and removal ---------------------------------------------------

  /** A fresh PSK for adding one more phone (the admin shows it to the new phone). */
  createInvite(by: string): Promise<InviteRecord> {
    return this.#mutex.run(async () => {
      const inv: InviteRecord = {
        pskId: b64(Buffer.concat([Buffer.from('vigil-invite:'), randomBytes(16)])),
        psk: b64(randomBytes(32)),
        expiresAt: this.now() + INVITE_TTL_MS,
        by,
      };
      const next: HubFile = {
        ...this.#hub,
        invites: [...this.#hub.invites.filter((i) => i.expiresAt > this.now()), inv],
      };
      await this.store.writeHub(next);
      this.#hub = next;
      return inv;
    });
  }

  /** Remove a phone: it receives nothing sealed from the next epoch on. */
  removePhone(phoneId: string): Promise<void> {
    return this.#mutex.run(async () => {
      const ph = this.#phones.get(phoneId);
      if (ph === undefined) throw new MlsHubError('EUNKNOWN_PHONE', `no phone ${phoneId}`);
      const next: HubFile = {
        ...this.#hub,
        phones: this.#hub.phones.filter((p) => p.phoneId !== phoneId),
      };
      await this.store.writeHub(next); // commit point: from here the phone is gone
      this.#hub = next;
      this.#phones.delete(phoneId);
      for (const kind of GROUP_KINDS) this.#lastPath.delete(`${phoneId}/${kind}`);
      this.auth.unpin(ph.cred.identity);
      for (const [kind, st] of ph.groups) {
        forgetPastEpochs(this.p, st);
        zeroAll(this.p, [
          st.keySchedule.exporterSecret,
          st.keySchedule.senderDataSecret,
          st.keySchedule.initSecret,
        ]);
        await this.store.removeGroup(phoneId, kind);
      }
      this.log.info('phone removed', { phoneId });
    });
  }

  // ---- config & notification groups ---------------------------------------------------

  #phoneByConfigGroup(groupId: Uint8Array): PhoneRuntime | undefined {
    for (const ph of this.#phones.values()) {
      const st = ph.groups.get('config');
      if (st !== undefined && Buffer.from(st.groupContext.groupId).equals(Buffer.from(groupId)))
        return ph;
    }
    return undefined;
  }

  /** Seal a message for one phone in its config (or notification) group. */
  sealFor(
    phoneId: string,
    msg: ConfigMessage,
    group: 'config' | 'notification' = 'config',
  ): Promise<Uint8Array> {
    return this.sealRecord(phoneId, group, encodeConfigMessage(msg));
  }

  /**
   * Seal raw plaintext as one application message in a phone's config or
   * notification group: a config message (JSON) or a privacy-mode stream record
   * (protocol/stream-record.ts, binary, told apart by its magic).
   */
  sealRecord(
    phoneId: string,
    group: 'config' | 'notification',
    plaintext: Uint8Array,
  ): Promise<Uint8Array> {
    return this.#mutex.run(async () => {
      const ph = this.#phones.get(phoneId);
      if (ph === undefined) throw new MlsHubError('EUNKNOWN_PHONE', `no phone ${phoneId}`);
      const st = ph.groups.get(group) as ClientState;
      const r = await this.p.mls.createApplicationMessage(st, plaintext, this.p.cs);
      // Persist the advanced sender ratchet BEFORE the message leaves (no key reuse after a crash).
      await this.store.writeGroup(
        phoneId,
        group,
        r.newState.groupContext.epoch,
        encodeState(this.p, r.newState),
      );
      ph.groups.set(group, r.newState);
      zeroAll(this.p, r.consumed);
      return encodeMessage(this.p, {
        version: 'mls10',
        wireformat: 'mls_private_message',
        privateMessage: r.privateMessage,
      });
    });
  }

  /** Send an event notice to every phone over its notification group. */
  async notify(
    notice: Omit<Extract<ConfigMessage, { t: 'notice' }>, 't'>,
  ): Promise<{ phoneId: string; bytes: Uint8Array }[]> {
    const out: { phoneId: string; bytes: Uint8Array }[] = [];
    for (const ph of this.phones)
      out.push({
        phoneId: ph.phoneId,
        bytes: await this.sealFor(ph.phoneId, { t: 'notice', ...notice }, 'notification'),
      });
    return out;
  }

  /**
   * Handle one MLS message from a phone's config group: heartbeat, admin
   * request, or an `app` envelope (Wi-Fi credentials, unlock, escrow, OTA).
   */
  async handleConfig(bytes: Uint8Array): Promise<ConfigOutcome> {
    const m = decodeMessage(this.p, bytes);
    if (m?.wireformat !== 'mls_private_message')
      throw new ValidationError('config message is not an MLS private message');
    const { ph, plain } = await this.#mutex.run(async () => {
      const ph = this.#phoneByConfigGroup(m.privateMessage.groupId);
      if (ph === undefined)
        throw new MlsHubError(
          'EUNKNOWN_GROUP',
          'message for a group this hub does not have (removed phone?)',
        );
      const st = ph.groups.get('config') as ClientState;
      let r;
      try {
        r = await this.p.mls.processPrivateMessage(
          st,
          m.privateMessage,
          this.p.mls.emptyPskIndex,
          this.p.cs,
          () => 'reject',
        );
      } catch (e) {
        throw new MlsHubError('EMLS_REJECTED', `config message rejected: ${reasonOf(e)}`, {
          cause: e,
        });
      }
      if (r.kind !== 'applicationMessage')
        throw new MlsHubError(
          'EMLS_REJECTED',
          'phones may not send handshakes in the config group',
        );
      await this.store.writeGroup(
        ph.rec.phoneId,
        'config',
        r.newState.groupContext.epoch,
        encodeState(this.p, r.newState),
      );
      ph.groups.set('config', forgetPastEpochs(this.p, r.newState));
      zeroAll(this.p, r.consumed);
      return { ph, plain: r.message };
    });
    const d = decodeConfigMessage(plain);
    if (!d.ok) throw new ValidationError(d.reason);
    const msg = d.value;
    const phoneId = ph.rec.phoneId;
    const replies: ConfigMessage[] = [];
    let acknowledged: string[] = [];
    let desync: DesyncReport[] = [];
    switch (msg.t) {
      case 'heartbeat': {
        const r = await this.#heartbeats.answer(ph, msg);
        const dropped = (await this.dropReporter?.(phoneId)) ?? 0;
        replies.push(
          dropped > 0 ? { ...r.ack, dropped: { items: dropped, reason: 'relay-outage' } } : r.ack,
        );
        acknowledged = r.deletable;
        desync = r.ack.desync;
        break;
      }
      case 'invite-request': {
        if (!ph.rec.admin) {
          replies.push({
            t: 'request-failed',
            requestId: msg.requestId,
            code: 'ENOT_ADMIN',
            message: 'only an admin phone can add phones',
          });
          break;
        }
        const inv = await this.createInvite(phoneId);
        const invite: InviteMessage = {
          t: 'invite',
          requestId: msg.requestId,
          deviceId: this.deviceId,
          pskId: inv.pskId,
          psk: inv.psk,
          expiresAt: inv.expiresAt,
        };
        replies.push(invite);
        break;
      }
      case 'remove-request': {
        if (!ph.rec.admin) {
          replies.push({
            t: 'request-failed',
            requestId: msg.requestId,
            code: 'ENOT_ADMIN',
            message: 'only an admin phone can remove phones',
          });
          break;
        }
        if (!this.#phones.has(msg.phoneId)) {
          replies.push({
            t: 'request-failed',
            requestId: msg.requestId,
            code: 'EUNKNOWN_PHONE',
            message: `no phone ${msg.phoneId}`,
          });
          break;
        }
        await this.removePhone(msg.phoneId);
        if (msg.phoneId !== phoneId)
          replies.push({ t: 'removed', requestId: msg.requestId, phoneId: msg.phoneId });
        break;
      }
      case 'app':
        break;
      case 'heartbeat-ack':
      case 'invite':
      case 'removed':
      case 'request-failed':
      case 'notice':
        throw new MlsHubError('EMLS_REJECTED', `a phone may not send "${msg.t}"`);
    }
    const sealed: Uint8Array[] = [];
    if (this.#phones.has(phoneId))
      for (const r of replies) sealed.push(await this.sealFor(phoneId, r));
    return { phoneId, message: msg, replies: sealed, acknowledged, desync };
  }

  /**
   * Items dropped unsent that `phoneId` has not been told about (firmware/uplink/drop-ledger.ts);
   * handed out with its next heartbeat-ack. Set by the composition root once the uplink runs.
   */
  dropReporter: ((phoneId: string) => Promise<number>) | undefined;

  /** Pending refreshes (phone-id/group), for tests and diagnostics. */
  get pendingRefreshes(): string[] {
    return [...this.#pendingRefresh.keys()];
  }
}
