/**
 * The phone's side of the config-group conversation with the hub: sealed
 * config messages (heartbeats with acks and refresh key packages, admin
 * requests, app messages) and the hub's answers (heartbeat-acks with
 * catch-up handshakes, invites, removals, notices). E2eePhone (phone.ts)
 * owns the groups and the handshake processing and hands them over here.
 */
import type { Mutex } from '../../base/async.js';
import { randomBytes } from 'node:crypto';
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
import { ValidationError, reasonOf } from '../../base/errors.js';
import {
  GROUP_KINDS,
  decodeMessage,
  encodeKeyPackageMessage,
  encodeMessage,
  epochCheck,
  forgetPastEpochs,
  newKeyPackage,
  zeroAll,
  type GroupKind,
  type MlsProfile,
  type SigningIdentity,
} from '../../protocol/mls-profile.js';
import { DesyncError, PhoneError } from './phone-store.js';
import { decodeStreamRecord, isStreamRecord, type Fragment } from '../../protocol/stream-record.js';
import type { GroupRuntime, PhoneStore } from './phone-store.js';

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
  | { readonly kind: 'app'; readonly topic: string; readonly body: Uint8Array }
  | {
      /** A privacy-mode stream record (protocol/stream-record.ts); a cover record has neither. */
      readonly kind: 'stream-record';
      /** Fragments of clips and thumbnails, for the reassembler (app/stream.ts). */
      readonly fragments: readonly Fragment[];
      readonly notices: readonly NoticeMessage[];
    };

/** What the conversation uses of the phone (E2eePhone builds it over its own state). */
export interface ConversationHost {
  readonly p: MlsProfile;
  readonly store: PhoneStore;
  readonly signing: SigningIdentity;
  readonly now: () => number;
  /** The phone's live groups (shared, not copied). */
  readonly groups: Map<GroupKind, GroupRuntime>;
  /** The phone's one lock over group state. */
  readonly mutex: Mutex;
  epoch(kind: GroupKind): bigint;
  groupId(kind: GroupKind): Uint8Array;
  /** Process a hub handshake for `kind` and merge it durably (held under `mutex`). */
  applyHandshake(
    kind: GroupKind,
    g: GroupRuntime,
    handshake: Uint8Array,
    epoch: bigint,
  ): Promise<void>;
  acknowledgedItems(): Promise<string[]>;
  /**
   * The highest epoch catch-up may bring `kind` to: one below an item that reported
   * `EEPOCH_GAP` (that item's own header carries the next commit; catching up past it
   * would make it, and every item after the gap, unreadable). Undefined: no limit.
   */
  catchUpLimit(kind: GroupKind): bigint | undefined;
  clearCatchUpLimit(kind: GroupKind): void;
}

export class ConfigConversation {
  readonly #h: ConversationHost;
  #hbSeq = 0;
  #pendingRequests = new Set<string>();
  /** Acks the hub confirmed receiving (not re-sent; after a restart they are, harmlessly). */
  #confirmedAcks = new Set<string>();

  constructor(host: ConversationHost) {
    this.#h = host;
  }

  async #seal(msg: ConfigMessage): Promise<Uint8Array> {
    return this.#h.mutex.run(async () => {
      const g = this.#h.groups.get('config') as GroupRuntime;
      const r = await this.#h.p.mls.createApplicationMessage(
        g.state,
        encodeConfigMessage(msg),
        this.#h.p.cs,
      );
      const next = { state: r.newState, digests: g.digests };
      // The advanced sender ratchet is durable before the message leaves.
      await this.#h.store.persistGroup('config', next);
      this.#h.groups.set('config', next);
      zeroAll(this.#h.p, r.consumed);
      return encodeMessage(this.#h.p, {
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
      const st = (this.#h.groups.get(kind) as GroupRuntime).state;
      epochs[kind] = st.groupContext.epoch.toString();
      checks[kind] = b64(await epochCheck(this.#h.p, st));
    }
    const refresh: { group: GroupKind; keyPackage: string }[] = [];
    for (const kind of opts.refresh ?? []) {
      if (kind !== 'motion' && kind !== 'thumbnail' && kind !== 'livestream')
        throw new ValidationError(`refresh by re-add is offered for item groups only, not ${kind}`);
      const kp = await newKeyPackage(this.#h.p, this.#h.signing, this.#h.now());
      const rec = {
        publicPackage: b64(encodeKeyPackageMessage(this.#h.p, kp.publicPackage)),
        privatePackage: {
          initPrivateKey: b64(kp.privatePackage.initPrivateKey),
          hpkePrivateKey: b64(kp.privatePackage.hpkePrivateKey),
          signaturePrivateKey: b64(kp.privatePackage.signaturePrivateKey),
        },
      };
      await this.#h.store.writeRefresh(kind, rec);
      refresh.push({ group: kind, keyPackage: rec.publicPackage });
    }
    this.#hbSeq += 1;
    return this.#seal({
      t: 'heartbeat',
      seq: this.#hbSeq,
      sentAt: this.#h.now(),
      epochs,
      checks,
      acks: (await this.#h.acknowledgedItems())
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
    const m = decodeMessage(this.#h.p, bytes);
    if (m?.wireformat !== 'mls_private_message')
      throw new ValidationError('hub message is not an MLS private message');
    const plain = await this.#h.mutex.run(async () => {
      const gid = Buffer.from(m.privateMessage.groupId);
      const kind = (['config', 'notification'] as const).find((k) =>
        gid.equals(Buffer.from(this.#h.groupId(k))),
      );
      if (kind === undefined)
        throw new PhoneError('ENOT_RECIPIENT', 'message for a group this phone is not in');
      const g = this.#h.groups.get(kind) as GroupRuntime;
      let r;
      try {
        r = await this.#h.p.mls.processPrivateMessage(
          g.state,
          m.privateMessage,
          this.#h.p.mls.emptyPskIndex,
          this.#h.p.cs,
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
      await this.#h.store.persistGroup(kind, next);
      this.#h.groups.set(kind, {
        state: forgetPastEpochs(this.#h.p, next.state),
        digests: next.digests,
      });
      zeroAll(this.#h.p, r.consumed);
      return r.message;
    });
    if (isStreamRecord(plain)) return streamInbound(plain);
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
    await this.#h.mutex.run(async () => {
      for (const c of ack.catchUp) {
        const g = this.#h.groups.get(c.group) as GroupRuntime;
        const epoch = BigInt(c.epoch);
        if (epoch <= g.state.groupContext.epoch) continue; // already there (e.g. the item arrived meanwhile)
        const limit = this.#h.catchUpLimit(c.group);
        if (limit !== undefined && epoch > limit) continue; // the waiting item brings this one
        await this.#h.applyHandshake(c.group, g, unb64(c.handshake), epoch);
        caughtUp += 1;
      }
    });
    // After catch-up, detect any remaining disagreement ourselves too.
    const reports: DesyncReport[] = [...ack.desync];
    for (const kind of GROUP_KINDS) {
      this.#h.clearCatchUpLimit(kind);
      const hubEpoch = ack.epochs[kind];
      if (hubEpoch === undefined) continue;
      const mine = this.#h.epoch(kind);
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

/** A decrypted stream record: media fragments for the reassembler, notices decoded. */
function streamInbound(plain: Uint8Array): Inbound {
  const r = decodeStreamRecord(plain);
  if (!r.ok) throw new ValidationError(r.reason);
  const fragments: Fragment[] = [];
  const notices: NoticeMessage[] = [];
  for (const f of r.value) {
    if (f.kind !== 'notice') {
      fragments.push(f);
      continue;
    }
    const d = decodeConfigMessage(f.bytes);
    if (!d.ok) throw new ValidationError(`stream record notice: ${d.reason}`);
    if (d.value.t !== 'notice')
      throw new ValidationError(`stream record notice: the hub may not send "${d.value.t}" there`);
    notices.push(d.value);
  }
  return { kind: 'stream-record', fragments, notices };
}
