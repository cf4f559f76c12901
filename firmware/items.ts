/**
 * Ports shared between the media pipeline, the E2EE layer and the uplink.
 * The media pipeline produces plaintext items; the MLS layer seals each one in
 * a new epoch; the uplink carries the ciphertext to the relay.
 *
 *   media --(plaintext chunks)--> ItemSealer --(ciphertext records)--> CiphertextSink
 */

import type { ItemKind } from '../protocol/items.js';

export interface ItemMeta {
  readonly kind: ItemKind;
  /** Wall-clock start, ms since the Unix epoch. */
  readonly startedAt: number;
  /** e.g. 'video/mp4; codecs="avc1.64001f"' or 'image/jpeg'. */
  readonly codec: string;
  /**
   * Seal in the epoch that this earlier item (its writer's itemId) began,
   * without an epoch advance of its own — a clip's thumbnail. The sealer falls
   * back to a new epoch when that epoch has passed or the kinds do not allow it.
   */
  readonly sameEpochAs?: string;
}

/** Writes one item's plaintext; the implementation seals and forwards it. */
export interface SealedItemWriter {
  readonly itemId: string;
  /** MLS epoch the item was sealed in. */
  readonly epoch: bigint;
  /** Append plaintext; chunking is the writer's business. */
  write(plain: Uint8Array): Promise<void>;
  /**
   * Finish the item (the last chunk is marked final). `note`: a short text
   * sealed in the end record (a clip's detected objects, `objects=person:0.82`).
   */
  close(durationMs: number, note?: string): Promise<void>;
  /** Abandon the item: whatever was sent is closed off so readers see a clean end. */
  abort(reason: string): Promise<void>;
}

export interface ItemSealer {
  /** Advance the epoch for this item and start sealing it. */
  begin(meta: ItemMeta): Promise<SealedItemWriter>;
}

/** Where sealed bytes go (the durable upload queue, or a local store in tests). */
export interface CiphertextSink {
  /** Ciphertext bytes of an item, in order. `final` on the last call. */
  append(itemId: string, kind: ItemKind, bytes: Uint8Array, final: boolean): Promise<void>;
  /**
   * Optional zero-copy form of `append`: the bytes are the concatenation of
   * `records` (whole records in order, each given as its parts: header |
   * ciphertext | tag), meant for a vectored write (writev) without assembling
   * them; a sink that needs records one by one (the live queue) has their
   * boundaries. A sink without it gets one `append` per record.
   */
  appendParts?(
    itemId: string,
    kind: ItemKind,
    records: readonly (readonly Uint8Array[])[],
    final: boolean,
  ): Promise<void>;
}
