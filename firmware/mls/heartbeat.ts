/**
 * The hub's answer to a phone's heartbeat (config group): per-group epoch and
 * epoch-check comparison with desync reports, catch-up handshakes from the
 * commit journal for a phone that is behind, refresh-by-re-add offers, item
 * acknowledgements, and pruning of journal records every phone has passed.
 * MlsHub (hub.ts) owns the groups and the epoch advance and hands them over here.
 */
import type { ClientState, KeyPackage } from 'ts-mls';
import { timingSafeEqual } from 'node:crypto';
import type { Mutex } from '../../base/async.js';
import type { Logger } from '../../base/logger.js';
import {
  b64,
  unb64,
  type DesyncReport,
  type HeartbeatAckMessage,
  type HeartbeatMessage,
} from '../../protocol/e2ee-frames.js';
import {
  GROUP_KINDS,
  decodeKeyPackageMessage,
  epochCheck,
  type GroupKind,
  type MlsProfile,
  type PinnedAuthService,
} from '../../protocol/mls-profile.js';
import { isApplied, type Journal, type JournalRecord } from './journal.js';
import type { PhoneRuntime } from './store.js';

/** What heartbeat handling uses of the hub (MlsHub builds it over its own state). */
export interface HeartbeatHost {
  readonly p: MlsProfile;
  readonly journal: Journal;
  readonly auth: PinnedAuthService;
  readonly log: Logger;
  readonly now: () => number;
  /** The hub's one lock over group state. */
  readonly mutex: Mutex;
  /** The hub's live phones (shared, not copied). */
  readonly phones: ReadonlyMap<string, PhoneRuntime>;
  /** Accepted refresh key packages by "phone-id/group", folded in by the next advance. */
  readonly pendingRefresh: Map<string, KeyPackage>;
}

/**
 * The journalled handshakes that take `phoneId` from `phoneEpoch` to
 * `hubEpoch` in `kind`, in order; undefined when any one is gone.
 */
export function catchUpFrom(
  records: readonly JournalRecord[],
  phoneId: string,
  kind: GroupKind,
  phoneEpoch: bigint,
  hubEpoch: bigint,
): HeartbeatAckMessage['catchUp'] | undefined {
  const missing = records
    .filter((r) => r.group === kind)
    .flatMap((r) =>
      r.entries
        .filter((e) => e.phoneId === phoneId)
        .map((e) => ({ epoch: BigInt(e.epoch), handshake: e.handshake })),
    )
    .filter((e) => e.epoch > phoneEpoch && e.epoch <= hubEpoch)
    .sort((a, b) => (a.epoch < b.epoch ? -1 : 1));
  const contiguous =
    missing.length === Number(hubEpoch - phoneEpoch) &&
    missing.every((e, i) => e.epoch === phoneEpoch + BigInt(i) + 1n);
  if (!contiguous) return undefined;
  return missing.map((e) => ({ group: kind, epoch: e.epoch.toString(), handshake: e.handshake }));
}

export class HeartbeatHandler {
  readonly #h: HeartbeatHost;
  /** Item id -> phones that acknowledged it (deletable once every current phone has). */
  readonly #ackers = new Map<string, Set<string>>();

  constructor(host: HeartbeatHost) {
    this.#h = host;
  }

  /** Answer one heartbeat of `ph`; `deletable`: items every current phone now holds. */
  async answer(
    ph: PhoneRuntime,
    hb: HeartbeatMessage,
  ): Promise<{ ack: HeartbeatAckMessage; deletable: string[] }> {
    const phoneId = ph.rec.phoneId;
    const catchUp: HeartbeatAckMessage['catchUp'] = [];
    const desync: DesyncReport[] = [];
    const epochs: Partial<Record<GroupKind, string>> = {};
    for (const kind of GROUP_KINDS) {
      const st = ph.groups.get(kind) as ClientState;
      const hubEpoch = st.groupContext.epoch;
      epochs[kind] = hubEpoch.toString();
      const reported = hb.epochs[kind];
      if (reported === undefined) {
        desync.push({
          group: kind,
          phoneEpoch: '0',
          hubEpoch: hubEpoch.toString(),
          reason: 'phone did not report this group',
        });
        continue;
      }
      const phoneEpoch = BigInt(reported);
      if (phoneEpoch === hubEpoch) {
        const check = b64(await epochCheck(this.#h.p, st));
        const theirs = hb.checks[kind];
        if (
          theirs === undefined ||
          theirs.length !== check.length ||
          !timingSafeEqual(Buffer.from(theirs), Buffer.from(check))
        ) {
          desync.push({
            group: kind,
            phoneEpoch: reported,
            hubEpoch: hubEpoch.toString(),
            reason: 'same epoch number but different group secrets (forked state)',
          });
        } else ph.confirmed.set(kind, hubEpoch);
      } else if (phoneEpoch < hubEpoch) {
        const missing = catchUpFrom(this.#h.journal.records, phoneId, kind, phoneEpoch, hubEpoch);
        if (missing !== undefined) {
          catchUp.push(...missing);
          ph.confirmed.set(kind, phoneEpoch);
        } else {
          desync.push({
            group: kind,
            phoneEpoch: reported,
            hubEpoch: hubEpoch.toString(),
            reason: `phone is ${hubEpoch - phoneEpoch} epoch(s) behind and the hub no longer has every missing commit: re-pair this phone`,
          });
        }
      } else {
        desync.push({
          group: kind,
          phoneEpoch: reported,
          hubEpoch: hubEpoch.toString(),
          reason: 'phone is ahead of the hub (hub state lost or rolled back)',
        });
      }
    }
    for (const d of desync)
      this.#h.log.warn('MLS desync with phone', {
        phoneId,
        group: d.group,
        phoneEpoch: d.phoneEpoch,
        hubEpoch: d.hubEpoch,
        reason: d.reason,
      });
    // refresh offers (phone refresh by re-add), validated against the pinned credential
    for (const offer of hb.refresh) {
      const kp = decodeKeyPackageMessage(this.#h.p, unb64(offer.keyPackage));
      const c = kp?.leafNode.credential;
      if (
        kp === undefined ||
        c?.credentialType !== 'basic' ||
        !this.#h.auth.isPinned(c.identity, kp.leafNode.signaturePublicKey) ||
        !Buffer.from(c.identity).equals(Buffer.from(ph.cred.identity))
      ) {
        desync.push({
          group: offer.group,
          phoneEpoch: hb.epochs[offer.group] ?? '0',
          hubEpoch: epochs[offer.group] ?? '0',
          reason: "refresh key package rejected: not this phone's pinned credential",
        });
        continue;
      }
      if (offer.group === 'motion' || offer.group === 'thumbnail' || offer.group === 'livestream')
        this.#h.pendingRefresh.set(`${phoneId}/${offer.group}`, kp);
      else
        // never dropped silently: the config and notification groups are not refreshed by re-add
        desync.push({
          group: offer.group,
          phoneEpoch: hb.epochs[offer.group] ?? '0',
          hubEpoch: epochs[offer.group] ?? '0',
          reason:
            'refresh key package rejected: only motion, thumbnail and livestream are refreshed',
        });
    }
    // item acknowledgements: deletable once every current phone acknowledged
    const deletable: string[] = [];
    for (const id of hb.acks) {
      const set = this.#ackers.get(id) ?? new Set<string>();
      set.add(phoneId);
      this.#ackers.set(id, set);
      if ([...this.#h.phones.keys()].every((p) => set.has(p))) {
        deletable.push(id);
        this.#ackers.delete(id);
      }
    }
    await this.#pruneJournal();
    return {
      ack: {
        t: 'heartbeat-ack',
        seq: hb.seq,
        hubTime: this.#h.now(),
        epochs,
        catchUp,
        acknowledged: hb.acks,
        desync,
      },
      deletable,
    };
  }

  /** Drop journal records every phone has confirmed passing. */
  async #pruneJournal(): Promise<void> {
    await this.#h.mutex.run(async () => {
      for (const r of this.#h.journal.records) {
        if (!isApplied(r)) continue;
        const done = r.entries.every((e) => {
          const ph = this.#h.phones.get(e.phoneId);
          if (ph === undefined) return true;
          const c = ph.confirmed.get(r.group);
          return c !== undefined && c >= BigInt(e.epoch);
        });
        if (done) await this.#h.journal.remove(r.seq);
      }
    });
  }
}
