/**
 * Follow the hub's live view through the relay: record 0 of a live item is the
 * container header (accepted like any item header), every later record is one
 * sealed chunk, decrypted by itself (`openChunkAt`), so frames the hub dropped
 * under back-pressure are simply skipped.
 */
import { isAborted } from '../base/async.js';
import { containerError, openChunkAt, parseHeader, RECORD_TYPE } from '../protocol/container.js';
import type { ParsedHeader, RecordType } from '../protocol/container.js';
import type { RelayClient } from '../protocol/relay-client.js';
import type { CompanionCrypto, ItemSummary } from './crypto.js';
import { CryptoError, summaryOf } from './crypto.js';

export interface LiveEvents {
  /** A new live item began (the consumer resets its decoder). */
  onStart(summary: ItemSummary): void;
  /** Plaintext of one chunk (an fMP4 fragment or a piece of one). */
  onData(plain: Buffer, index: number): void;
  /** The live item ended. */
  onEnd?(): void;
}

export async function followLive(
  client: RelayClient,
  crypto: CompanionCrypto,
  ev: LiveEvents,
  signal: AbortSignal,
  /** Follow only this live item (from `live-started`); older items on the relay are skipped. */
  expect?: string,
): Promise<void> {
  let itemId: string | undefined;
  let after: number | undefined;
  let header: ParsedHeader | undefined;
  let key: Buffer | undefined;
  let lastChunk = -1;
  while (!signal.aborted) {
    let rec;
    try {
      rec = await client.readLive({
        ...(itemId !== undefined ? { itemId } : {}),
        ...(after !== undefined ? { after } : {}),
        waitMs: 15_000,
        signal,
      });
    } catch (e) {
      if (isAborted(signal)) return;
      throw e;
    }
    if (!rec) continue;
    if (expect !== undefined && rec.itemId !== expect) {
      // The relay still holds the previous session: wait for the hub's new one to arrive.
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    if (rec.itemId !== itemId || rec.index === 0) {
      if (rec.index !== 0) {
        // joined a new item but its header is gone: start again from its header
        itemId = undefined;
        after = undefined;
        continue;
      }
      const ph = parseHeader(rec.data);
      if (!ph.ok) throw containerError(ph);
      header = ph.value.header;
      key =
        (await crypto.itemKey(header)) ??
        (await crypto.acceptHeader(header).then(() => crypto.itemKey(header as ParsedHeader)));
      if (!key) throw new CryptoError('ENOKEY', 'no key for the live item');
      itemId = rec.itemId;
      after = 0;
      lastChunk = -1;
      ev.onStart(summaryOf(header));
      continue;
    }
    after = rec.index;
    if (!header || !key) continue;
    const chunk = rec.index - 1;
    if (chunk <= lastChunk) continue;
    const type = rec.data[0] as RecordType;
    const opened = openChunkAt(
      rec.data,
      header,
      key,
      { type, index: chunk, offset: 0, length: rec.data.length },
      chunk,
    );
    if (!opened.ok) throw containerError(opened);
    lastChunk = chunk;
    if (type === RECORD_TYPE.end) {
      ev.onEnd?.();
      // keep itemId/after: the next read waits for the next live item's header
      header = undefined;
      key = undefined;
      continue;
    }
    ev.onData(opened.value, chunk);
  }
}
