/**
 * The companion's decryption port. The relay client, the local store, the CLI
 * and the viewer talk to this interface; the E2EE layer (app/e2ee) provides the
 * real implementation over MLS, and `StaticKeyCrypto` (below) is the
 * development/test stand-in that opens the same container format with one fixed
 * wrap key instead of MLS-exported keys.
 *
 * Order matters with MLS: an item's header carries the commit that moves the
 * group to the item's epoch, and past-epoch keys are deleted. So the companion
 * accepts headers strictly in relay order (as soon as they arrive, even while
 * the rest of the item is still uploading), keeps the item key, and decrypts
 * the body later from its local copy.
 */
import {
  containerError,
  ContainerError,
  decodeTrailer,
  ContainerReader,
  indexRecords,
  openChunkAt,
  parseHeader,
  RECORD_HEADER_LENGTH,
  RECORD_TYPE,
  TAG_LENGTH,
  unwrapContentKey,
  type ParsedHeader,
  type RecordRef,
  type Trailer,
} from '../protocol/container.js';
import { VigilError } from '../base/errors.js';
import type { ItemKind } from '../protocol/items.js';
import type { Fragment } from '../protocol/stream-record.js';

export interface ItemSummary {
  /** Hex item id from the container header. */
  readonly itemId: string;
  readonly kind: ItemKind;
  readonly deviceId: string;
  readonly startedAt: number;
  readonly codec: string;
}

export interface OpenedItem {
  readonly summary: ItemSummary;
  readonly plaintext: Buffer;
  readonly trailer: Trailer;
}

export interface CompanionCrypto {
  /** Process an item's header (first sight, relay order): advance the epoch, keep the item key. */
  acceptHeader(header: ParsedHeader): Promise<ItemSummary>;
  /** The content key of an item whose header was accepted earlier. */
  itemKey(header: ParsedHeader): Promise<Buffer | undefined>;
  /** Mark an item as safely stored (the E2EE layer may report it to the hub). */
  acknowledge(itemId: string): Promise<void>;
  /** A heartbeat message for the hub's config group. */
  heartbeat(): Promise<Uint8Array>;
  /** Handle a message from the hub's config group; returns a one-line description. */
  receive(bytes: Uint8Array): Promise<string>;
  /** Delete what is kept to open an item (the user deleted it); absent when nothing is kept per item. */
  forget?(itemId: string): Promise<void>;
  /**
   * `receive`, also handing back the media fragments of a privacy-mode stream
   * record (protocol/stream-record.ts) for the reassembler. Optional: without it
   * the syncer uses `receive` and a stream record carries nothing.
   */
  receiveMessage?(bytes: Uint8Array): Promise<ReceivedMessage>;
}

export interface ReceivedMessage {
  readonly text: string;
  readonly fragments?: readonly Fragment[];
}

export class CryptoError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CryptoError';
  }
}

export function summaryOf(h: ParsedHeader): ItemSummary {
  return {
    itemId: Buffer.from(h.core.itemId).toString('hex'),
    kind: h.core.kind,
    deviceId: h.core.deviceId,
    startedAt: h.core.startedAt,
    codec: h.core.codec,
  };
}

/** A stored item checked end to end (every record authenticated), its plaintext dropped. */
export interface VerifiedItem {
  readonly summary: ItemSummary;
  readonly trailer: Trailer;
  /** Plaintext bytes in its chunks. */
  readonly plaintextBytes: number;
}

/**
 * Open a stored item with its kept key, record by record: each chunk is decrypted in
 * place (a view of `bytes`) and handed to `onChunk` as soon as it is authenticated;
 * nothing is joined and at most one chunk's plaintext is alive at a time. The end
 * record is checked last: a caller that presents the chunks as they come must treat
 * the item as good only once this resolves (a tampered or missing record rejects).
 */
export async function streamItem(
  crypto: CompanionCrypto,
  bytes: Uint8Array,
  onChunk: (plaintext: Buffer) => void | Promise<void>,
): Promise<{ summary: ItemSummary; trailer: Trailer }> {
  const ph = parseHeader(bytes);
  if (!ph.ok) throw containerError(ph);
  const summary = summaryOf(ph.value.header);
  const key = await keyOf(crypto, ph.value.header, summary);
  const r = new ContainerReader();
  r.setKey(key);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // whole records per push (views, no copy): the header, then each record
  let off = ph.value.length;
  const first = r.push(b.subarray(0, off));
  if (!first.ok) throw containerError(first);
  while (off < b.length) {
    const next =
      off + RECORD_HEADER_LENGTH <= b.length
        ? Math.min(b.length, off + RECORD_HEADER_LENGTH + b.readUInt32BE(off + 21))
        : b.length;
    const ev = r.push(b.subarray(off, next));
    if (!ev.ok) throw containerError(ev);
    for (const e of ev.value) if (e.type === 'chunk') await onChunk(e.plaintext);
    off = next;
  }
  const fin = r.finish();
  if (!fin.ok) throw containerError(fin);
  return { summary, trailer: fin.value };
}

async function keyOf(
  crypto: CompanionCrypto,
  header: ParsedHeader,
  summary: ItemSummary,
): Promise<Buffer> {
  const key = await crypto.itemKey(header);
  if (!key)
    throw new CryptoError(
      'ENOKEY',
      `no key kept for item ${summary.itemId} (its header was never accepted)`,
    );
  return key;
}

/**
 * Decrypt a whole stored item with its kept key, joined into one buffer. For small items
 * and tests: the viewer and the CLI stream (`openStoredItem`, `streamItem`).
 */
export async function openItem(crypto: CompanionCrypto, bytes: Uint8Array): Promise<OpenedItem> {
  const parts: Buffer[] = [];
  const { summary, trailer } = await streamItem(crypto, bytes, (p) => {
    parts.push(p);
  });
  return { summary, plaintext: Buffer.concat(parts), trailer };
}

/**
 * Check a stored item opens (authentic, complete) and read its trailer, without
 * assembling its plaintext (what sync needs before it keeps and acknowledges an item).
 */
export async function verifyItem(
  crypto: CompanionCrypto,
  bytes: Uint8Array,
): Promise<VerifiedItem> {
  let plaintextBytes = 0;
  const { summary, trailer } = await streamItem(crypto, bytes, (p) => {
    plaintextBytes += p.length;
  });
  return { summary, trailer, plaintextBytes };
}

/**
 * A stored item ready to be read by plaintext range (the viewer's media responses):
 * its records indexed without decrypting them, its end record authenticated and its
 * counts checked against the records present, so a truncated item or one with bytes
 * after its end is refused before anything is sent. Data chunks are authenticated
 * as `read` reaches them: a tampered chunk throws there (ECHUNK_TAMPERED) and the
 * caller must abandon what it sent of the item.
 */
export interface StoredItemReader {
  readonly summary: ItemSummary;
  readonly trailer: Trailer;
  /** Plaintext bytes of the whole item. */
  readonly size: number;
  /** The plaintext bytes [start, end] (inclusive), chunk by chunk. */
  read(start: number, end: number): Generator<Buffer>;
}

export async function openStoredItem(
  crypto: CompanionCrypto,
  bytes: Uint8Array,
): Promise<StoredItemReader> {
  const ix = indexRecords(bytes);
  if (!ix.ok) throw containerError(ix);
  const { header, records } = ix.value;
  const summary = summaryOf(header);
  const key = await keyOf(crypto, header, summary);
  const last = records.at(-1);
  if (last?.type !== RECORD_TYPE.end) {
    const what = last === undefined ? 'no record' : `${records.length} record(s)`;
    throw new ContainerError('EITEM_TRUNCATED', `item truncated after ${what}: no end record`);
  }
  if (last.offset + last.length !== bytes.length)
    throw new ContainerError(
      'ETRAILING_DATA',
      `${bytes.length - last.offset - last.length} bytes after the end record`,
    );
  const chunks = records.slice(0, -1);
  if (chunks.some((r) => r.type !== RECORD_TYPE.data))
    throw new ContainerError('ECONTAINER_FORMAT', 'an end record before the last record');
  const end = openChunkAt(bytes, header, key, last, chunks.length);
  if (!end.ok) throw containerError(end);
  const ends: number[] = []; // plaintext end offset of each chunk
  let size = 0;
  for (const r of chunks) {
    size += r.length - RECORD_HEADER_LENGTH - TAG_LENGTH;
    ends.push(size);
  }
  const t = decodeTrailer(end.value);
  if (!t.ok) throw containerError(t);
  const trailer = t.value;
  if (trailer.chunkCount !== chunks.length || trailer.totalBytes !== size)
    throw new ContainerError(
      'EITEM_TRUNCATED',
      `end record counts ${trailer.chunkCount} chunks/${trailer.totalBytes} bytes, the item holds ${chunks.length}/${size}`,
    );
  return {
    summary,
    trailer,
    size,
    *read(start: number, last: number): Generator<Buffer> {
      if (start > last) return;
      let i = firstAtOrAfter(ends, start);
      while (i < chunks.length) {
        const from = i === 0 ? 0 : (ends[i - 1] as number);
        if (from > last) return;
        const plain = openChunkAt(bytes, header, key, chunks[i] as RecordRef, i);
        if (!plain.ok) throw containerError(plain);
        yield plain.value.subarray(
          Math.max(0, start - from),
          Math.min(plain.value.length, last - from + 1),
        );
        i++;
      }
    },
  };
}

/** The first chunk whose plaintext ends after `offset` (binary search over the end offsets). */
function firstAtOrAfter(ends: readonly number[], offset: number): number {
  let lo = 0;
  let hi = ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((ends[mid] as number) <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Development and test stand-in: every item's content key is wrapped for
 * recipient 0 under one fixed 32-byte key. No forward secrecy, no MLS: never
 * for real cameras (the CLI says so loudly when it is used).
 */
export class StaticKeyCrypto implements CompanionCrypto {
  readonly #wrapKey: Buffer;
  readonly acknowledged: string[] = [];
  readonly received: Uint8Array[] = [];

  constructor(wrapKey: Uint8Array) {
    if (wrapKey.length !== 32)
      throw new CryptoError('EKEY', 'the static wrap key must be 32 bytes');
    this.#wrapKey = Buffer.from(wrapKey);
  }

  acceptHeader(header: ParsedHeader): Promise<ItemSummary> {
    const cek = unwrapContentKey(this.#wrapKey, header, 0);
    if (!cek.ok) return Promise.reject(containerError(cek));
    return Promise.resolve(summaryOf(header));
  }

  itemKey(header: ParsedHeader): Promise<Buffer | undefined> {
    // Stateless by design: the fixed key re-opens any item (this is what MLS prevents).
    const cek = unwrapContentKey(this.#wrapKey, header, 0);
    return Promise.resolve(cek.ok ? cek.value : undefined);
  }

  acknowledge(itemId: string): Promise<void> {
    this.acknowledged.push(itemId);
    return Promise.resolve();
  }

  heartbeat(): Promise<Uint8Array> {
    return Promise.resolve(
      Buffer.from(
        JSON.stringify({
          type: 'dev-heartbeat',
          at: Date.now(),
          acknowledged: this.acknowledged.length,
        }),
      ),
    );
  }

  receive(bytes: Uint8Array): Promise<string> {
    this.received.push(bytes);
    return Promise.resolve(`message of ${bytes.length} bytes`);
  }
}
