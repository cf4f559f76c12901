/**
 * The hub's `ItemSealer`: every item begins a new epoch in each phone's group
 * for its kind (clip -> motion, thumbnail -> thumbnail, live -> livestream),
 * gets a random content key wrapped once per phone with that phone's
 * exporter-derived key, and streams Vigil container records to the sink:
 * first the header (with the commits), then one record per sealed chunk as
 * plaintext arrives, then the end record.
 */
import type { CiphertextSink, ItemMeta, ItemSealer, SealedItemWriter } from '../items.js';
import {
  ContainerWriter,
  DEFAULT_CHUNK_SIZE,
  newContentKey,
  newItemId,
  sealHeader,
  type HeaderCore,
} from '../../protocol/container.js';
import { VigilError, reasonOf } from '../../base/errors.js';
import type { RandomSource } from '../../base/random.js';
import { GROUP_FOR_ITEM, ITEM_GROUPS, type GroupKind } from '../../protocol/mls-profile.js';
import { SILENT, type Logger } from '../../base/logger.js';
import type { AdvanceRecipient, MlsHub } from './hub.js';

export interface MlsItemSealerDeps {
  readonly hub: MlsHub;
  readonly sink: CiphertextSink;
  readonly deviceId: string;
  /** Max plaintext per chunk (default 64 KiB). A write() larger than this is split. */
  readonly chunkSize?: number;
  readonly logger?: Logger;
  /** Item ids and content keys (default node:crypto; tests fix them). */
  readonly random?: RandomSource;
}

export class SealerError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'SealerError';
  }
}

/** How many recent items' epochs are remembered for `sameEpochAs`. */
const RECENT_EPOCHS = 8;

interface EpochOf {
  readonly group: GroupKind;
  readonly recipients: readonly AdvanceRecipient[];
}

/** The epoch an item is sealed in, and its wrap keys (one per recipient; zeroed after use). */
interface ItemEpoch extends EpochOf {
  readonly wrapKeys: readonly Uint8Array[];
}

export class MlsItemSealer implements ItemSealer {
  readonly #d: MlsItemSealerDeps;
  readonly #log: Logger;
  /**
   * Headers leave in epoch order even when items of one kind overlap: a phone
   * must see commit e+1 before e+2 (the relay keeps each mailbox in order).
   */
  #headers: Promise<void> = Promise.resolve();

  constructor(deps: MlsItemSealerDeps) {
    this.#d = deps;
    this.#log = (deps.logger ?? SILENT).child('sealer');
  }

  /** The epochs recent items began (by item id, newest last), for `sameEpochAs`. */
  readonly #epochs = new Map<string, EpochOf>();

  async begin(meta: ItemMeta): Promise<SealedItemWriter> {
    const itemId = newItemId(this.#d.random);
    const group = GROUP_FOR_ITEM[meta.kind];
    const adv: ItemEpoch = (await this.#inEpochOf(meta, itemId)) ?? {
      group,
      ...(await this.#d.hub.advance(group, itemId)),
    };
    const cek = newContentKey(this.#d.random);
    const chunkSize = this.#d.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const core: HeaderCore = {
      itemId,
      kind: meta.kind,
      flags: 0,
      deviceId: this.#d.deviceId,
      startedAt: Math.max(0, Math.floor(meta.startedAt)),
      codec: meta.codec,
      chunkSize,
      recipients: adv.recipients.map((r) => ({
        groupId: r.groupId,
        epoch: r.epoch,
        handshake: r.handshake,
      })),
    };
    const header = sealHeader(core, cek, adv.wrapKeys);
    for (const k of adv.wrapKeys) k.fill(0);
    const writer = new ContainerWriter(cek, itemId, header.digest, chunkSize);
    cek.fill(0);
    const id = itemId.toString('hex');
    const sink = this.#d.sink;
    const first = adv.recipients[0];
    if (first === undefined) throw new SealerError('ENO_PHONES', 'no recipients');
    if (adv.group === group) {
      this.#epochs.set(id, { group: adv.group, recipients: adv.recipients });
      for (const old of this.#epochs.keys()) {
        if (this.#epochs.size <= RECENT_EPOCHS) break;
        this.#epochs.delete(old);
      }
    }
    const emitted = this.#headers.then(() => sink.append(id, meta.kind, header.record, false));
    this.#headers = emitted.catch(() => undefined);
    await emitted;
    this.#log.debug('item begun', {
      itemId: id,
      kind: meta.kind,
      group: adv.group,
      epoch: first.epoch.toString(),
      recipients: adv.recipients.length,
      ...(adv.group === group ? {} : { sameEpochAs: meta.sameEpochAs }),
    });

    // Serialise writes so records reach the sink in index order.
    let tail: Promise<void> = Promise.resolve();
    const enqueue = (fn: () => Promise<void>): Promise<void> => {
      const next = tail.then(fn);
      tail = next.catch(() => undefined);
      return next;
    };
    let failed: unknown;
    return {
      itemId: id,
      epoch: first.epoch,
      write: (plain: Uint8Array) =>
        enqueue(async () => {
          if (failed !== undefined)
            throw new SealerError('EITEM_FAILED', `item ${id} already failed: ${reasonOf(failed)}`);
          if (writer.ended) throw new SealerError('EITEM_ENDED', `item ${id} is already closed`);
          try {
            if (sink.appendParts !== undefined) {
              const records = writer.sealRecords(plain);
              if (records.length > 0) await sink.appendParts(id, meta.kind, records, false);
            } else
              for (const rec of writer.seal(plain)) await sink.append(id, meta.kind, rec, false);
          } catch (e) {
            failed = e;
            throw e;
          }
        }),
      close: (durationMs: number, note?: string) =>
        enqueue(async () => {
          if (writer.ended) throw new SealerError('EITEM_ENDED', `item ${id} is already closed`);
          await sink.append(id, meta.kind, writer.end('complete', durationMs, note ?? ''), true);
        }),
      abort: (reason: string) =>
        enqueue(async () => {
          if (writer.ended) return;
          await sink.append(id, meta.kind, writer.end('aborted', 0, reason), true);
          this.#log.info('item aborted', { itemId: id, reason });
        }),
    };
  }

  /**
   * `meta.sameEpochAs`: the wrap keys of this item in that item's epoch (its
   * header repeats that item's handshakes, so a phone may open either first),
   * or undefined when that epoch is gone (a later advance, a phone added or
   * removed) or this kind may not ride in that group (ITEM_GROUPS, and never
   * in its own kind's group).
   */
  async #inEpochOf(meta: ItemMeta, itemId: Uint8Array): Promise<ItemEpoch | undefined> {
    if (meta.sameEpochAs === undefined) return undefined;
    const e = this.#epochs.get(meta.sameEpochAs);
    // Only into another kind's group (a thumbnail into its clip's): an item of the same kind
    // always begins a new epoch — each 60 s segment of a long event too (docs/decisions.md).
    const own = GROUP_FOR_ITEM[meta.kind];
    if (
      e === undefined ||
      e.group === own ||
      !(ITEM_GROUPS[meta.kind] as readonly GroupKind[]).includes(e.group)
    )
      return undefined;
    const wrapKeys = await this.#d.hub.wrapKeysInEpoch(e.group, e.recipients, itemId);
    if (wrapKeys === undefined) return undefined;
    return { group: e.group, recipients: e.recipients, wrapKeys };
  }
}
