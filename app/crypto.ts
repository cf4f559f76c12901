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
  ContainerReader,
  parseHeader,
  unwrapContentKey,
  type ParsedHeader,
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
 * Open a stored item with its kept key: every record is decrypted in place (views of
 * `bytes`) and handed to `onChunk` in order, nothing is joined.
 */
async function readItem(
  crypto: CompanionCrypto,
  bytes: Uint8Array,
  onChunk: (plaintext: Buffer) => void,
): Promise<{ summary: ItemSummary; trailer: Trailer }> {
  const ph = parseHeader(bytes);
  if (!ph.ok) throw containerError(ph);
  const summary = summaryOf(ph.value.header);
  const key = await crypto.itemKey(ph.value.header);
  if (!key)
    throw new CryptoError(
      'ENOKEY',
      `no key kept for item ${summary.itemId} (its header was never accepted)`,
    );
  const r = new ContainerReader();
  r.setKey(key);
  const ev = r.push(bytes);
  if (!ev.ok) throw containerError(ev);
  const fin = r.finish();
  if (!fin.ok) throw containerError(fin);
  for (const e of ev.value) if (e.type === 'chunk') onChunk(e.plaintext);
  return { summary, trailer: fin.value };
}

/** Decrypt a whole stored item with its kept key. */
export async function openItem(crypto: CompanionCrypto, bytes: Uint8Array): Promise<OpenedItem> {
  const parts: Buffer[] = [];
  const { summary, trailer } = await readItem(crypto, bytes, (p) => parts.push(p));
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
  const { summary, trailer } = await readItem(crypto, bytes, (p) => {
    plaintextBytes += p.length;
  });
  return { summary, trailer, plaintextBytes };
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
