/**
 * Vigil's encrypted media container (format version 1). Pure: no I/O, only
 * node:crypto. docs/protocol.md ("Encrypted media container") specifies every
 * byte; this file is the reference implementation.
 *
 * One item (clip, thumbnail, live session) is a stream of records:
 *
 *   preamble  "VGLC" | version u8 (=1)
 *   record    type u8 | itemId [16] | index u32 | length u32 | body [length]
 *
 *   type 1  header: core (item metadata + one MLS handshake per recipient
 *           group) and one wrapped content key per recipient
 *   type 2  data chunk: ChaCha20-Poly1305(CEK, nonce(index), aad, plaintext)
 *   type 3  end: the same AEAD over the trailer (status, duration, counts);
 *           its AAD carries the last-chunk flag, so truncation is detected
 *
 * The content key (CEK) is random per item. Each recipient (one MLS group per
 * paired phone) gets the CEK wrapped under a key exported from that group's
 * new epoch (see protocol/mls-profile.ts, `itemWrapKey`). The wrap's AAD is
 * the SHA-256 digest of the header core, so every header field is
 * authenticated by a successful unwrap, and every chunk's AAD repeats the
 * digest, the item id, the chunk index and the last-chunk flag: reordering,
 * truncation, splicing and bit flips all fail with a specific error.
 *
 * Streaming: `ContainerWriter` emits the header record first and then one
 * record per sealed chunk; `ContainerReader` accepts bytes in arbitrary pieces
 * and yields plaintext chunk by chunk. `indexRecords` + `openChunkAt` seek by
 * chunk.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { CodedError } from '../base/errors.js';
import { cryptoRandom, type RandomSource } from '../base/random.js';
import { fail, ok, type Failure, type Result } from '../base/result.js';
import type { ItemKind } from './items.js';

export const CONTAINER_MAGIC = Uint8Array.from([0x56, 0x47, 0x4c, 0x43]); // "VGLC"
export const CONTAINER_VERSION = 1;
export const PREAMBLE_LENGTH = 5;
export const RECORD_HEADER_LENGTH = 25; // type 1 + itemId 16 + index 4 + length 4
export const ITEM_ID_LENGTH = 16;
export const KEY_LENGTH = 32;
export const TAG_LENGTH = 16;
export const WRAPPED_KEY_LENGTH = KEY_LENGTH + TAG_LENGTH;
/** Default (and maximum) plaintext bytes per data chunk. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 1024 * 1024;
/** Upper bound for a header record body (handshakes of up to 16 recipients). */
export const MAX_HEADER_LENGTH = 4 * 1024 * 1024;
export const MAX_RECIPIENTS = 16;

export const RECORD_TYPE = { header: 1, data: 2, end: 3 } as const;
export type RecordType = (typeof RECORD_TYPE)[keyof typeof RECORD_TYPE];

export const ITEM_KIND_CODE = { clip: 1, thumbnail: 2, live: 3 } as const satisfies Record<
  ItemKind,
  number
>;

const WRAP_LABEL = Buffer.from('vigil-wrap-v1', 'ascii');
const CHUNK_LABEL = Buffer.from('vigil-chunk-v1', 'ascii');
const DIGEST_LABEL = Buffer.from('vigil-container-v1', 'ascii');
const ZERO_NONCE = new Uint8Array(12);

export type ContainerErrorCode =
  | 'ECONTAINER_FORMAT'
  | 'EHEADER_TAMPERED'
  | 'ECHUNK_TAMPERED'
  | 'ECHUNK_REORDERED'
  | 'ECHUNK_SPLICED'
  | 'EITEM_TRUNCATED'
  | 'ETRAILING_DATA'
  | 'ENOT_RECIPIENT';

export class ContainerError extends CodedError<ContainerErrorCode> {}

/** One recipient group: the MLS handshake that moves it to `epoch`. */
export interface ContainerRecipient {
  /** MLS group id of the recipient group. */
  readonly groupId: Uint8Array;
  /** The group's epoch after `handshake` (the epoch the item key was exported in). */
  readonly epoch: bigint;
  /** An encoded MLSMessage: a commit (private message) or a Welcome; may be empty. */
  readonly handshake: Uint8Array;
}

/** The authenticated header core. */
export interface HeaderCore {
  readonly itemId: Uint8Array;
  readonly kind: ItemKind;
  /** Reserved, must be 0 in version 1. */
  readonly flags: number;
  readonly deviceId: string;
  /** Wall-clock start, ms since the Unix epoch. */
  readonly startedAt: number;
  readonly codec: string;
  /** Maximum plaintext bytes per data chunk. */
  readonly chunkSize: number;
  readonly recipients: readonly ContainerRecipient[];
}

export interface ParsedHeader {
  readonly core: HeaderCore;
  /** SHA-256 over the label and the encoded core. */
  readonly digest: Uint8Array;
  /** One 48-byte wrapped content key per recipient, same order. */
  readonly wraps: readonly Uint8Array[];
}

export type EndStatus = 'complete' | 'aborted';

export interface Trailer {
  readonly status: EndStatus;
  readonly durationMs: number;
  /** Data chunks before the end record. */
  readonly chunkCount: number;
  /** Plaintext bytes in all data chunks. */
  readonly totalBytes: number;
  /** Why the item was aborted ('' when complete). */
  readonly reason: string;
}

/** What every container decoder returns (base/result.ts): a value, or a code and a reason. */
export type ContainerResult<T> = Result<T, ContainerErrorCode>;

/** A failed result as a ContainerError, for callers that cannot go on and throw. */
export function containerError(f: Failure<ContainerErrorCode>): ContainerError {
  return new ContainerError(f.code, f.reason);
}

// ---- byte helpers -------------------------------------------------------------

class ByteWriter {
  #parts: Buffer[] = [];
  u8(v: number): this {
    this.#parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.#parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.#parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.#parts.push(b);
    return this;
  }
  bytes(v: Uint8Array): this {
    this.#parts.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** Bounds-checked reader; every getter returns undefined past the end. */
export class ByteReader {
  readonly buf: Buffer;
  pos = 0;
  constructor(bytes: Uint8Array) {
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  u8(): number | undefined {
    if (this.remaining < 1) return undefined;
    return this.buf[this.pos++];
  }
  u16(): number | undefined {
    if (this.remaining < 2) return undefined;
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number | undefined {
    if (this.remaining < 4) return undefined;
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint | undefined {
    if (this.remaining < 8) return undefined;
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  bytes(n: number): Uint8Array | undefined {
    if (n < 0 || this.remaining < n) return undefined;
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return new Uint8Array(v);
  }
}

// ---- header -------------------------------------------------------------------

const KIND_BY_CODE = new Map<number, ItemKind>(
  Object.entries(ITEM_KIND_CODE).map(([k, v]) => [v, k as ItemKind]),
);

export function encodeHeaderCore(core: HeaderCore): Buffer {
  if (core.itemId.length !== ITEM_ID_LENGTH)
    throw new ContainerError('ECONTAINER_FORMAT', 'item id must be 16 bytes');
  const device = Buffer.from(core.deviceId, 'utf8');
  const codec = Buffer.from(core.codec, 'utf8');
  if (device.length > 255)
    throw new ContainerError('ECONTAINER_FORMAT', 'device id longer than 255 bytes');
  if (codec.length > 65535) throw new ContainerError('ECONTAINER_FORMAT', 'codec string too long');
  if (core.recipients.length > MAX_RECIPIENTS)
    throw new ContainerError('ECONTAINER_FORMAT', `more than ${MAX_RECIPIENTS} recipients`);
  if (!Number.isInteger(core.chunkSize) || core.chunkSize < 1 || core.chunkSize > MAX_CHUNK_SIZE) {
    throw new ContainerError('ECONTAINER_FORMAT', `chunk size must be 1..${MAX_CHUNK_SIZE}`);
  }
  if (!Number.isSafeInteger(core.startedAt) || core.startedAt < 0)
    throw new ContainerError('ECONTAINER_FORMAT', 'startedAt must be a non-negative integer');
  const w = new ByteWriter()
    .bytes(core.itemId)
    .u8(ITEM_KIND_CODE[core.kind])
    .u8(core.flags)
    .u8(device.length)
    .bytes(device)
    .u64(BigInt(core.startedAt))
    .u16(codec.length)
    .bytes(codec)
    .u32(core.chunkSize)
    .u8(core.recipients.length);
  for (const r of core.recipients) {
    if (r.groupId.length > 255)
      throw new ContainerError('ECONTAINER_FORMAT', 'group id longer than 255 bytes');
    w.u8(r.groupId.length).bytes(r.groupId).u64(r.epoch).u32(r.handshake.length).bytes(r.handshake);
  }
  return w.done();
}

export function decodeHeaderCore(bytes: Uint8Array): ContainerResult<HeaderCore> {
  const r = new ByteReader(bytes);
  const bad = (what: string): ContainerResult<HeaderCore> =>
    fail('ECONTAINER_FORMAT', `header core: ${what}`);
  const itemId = r.bytes(ITEM_ID_LENGTH);
  const kindCode = r.u8();
  const flags = r.u8();
  if (itemId === undefined || kindCode === undefined || flags === undefined)
    return bad('too short');
  const kind = KIND_BY_CODE.get(kindCode);
  if (kind === undefined) return bad(`unknown item kind ${kindCode}`);
  if (flags !== 0) return bad(`unknown flags ${flags}`);
  const devLen = r.u8();
  const dev = devLen === undefined ? undefined : r.bytes(devLen);
  const startedAt = r.u64();
  const codecLen = r.u16();
  const codec = codecLen === undefined ? undefined : r.bytes(codecLen);
  const chunkSize = r.u32();
  const count = r.u8();
  if (
    dev === undefined ||
    startedAt === undefined ||
    codec === undefined ||
    chunkSize === undefined ||
    count === undefined
  ) {
    return bad('truncated');
  }
  if (startedAt > BigInt(Number.MAX_SAFE_INTEGER)) return bad('startedAt out of range');
  if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE)
    return bad(`chunk size ${chunkSize} out of range`);
  if (count > MAX_RECIPIENTS) return bad(`${count} recipients (max ${MAX_RECIPIENTS})`);
  const recipients: ContainerRecipient[] = [];
  for (let i = 0; i < count; i++) {
    const gl = r.u8();
    const groupId = gl === undefined ? undefined : r.bytes(gl);
    const epoch = r.u64();
    const hl = r.u32();
    const handshake = hl === undefined ? undefined : r.bytes(hl);
    if (groupId === undefined || epoch === undefined || handshake === undefined)
      return bad(`recipient ${i} truncated`);
    recipients.push({ groupId, epoch, handshake });
  }
  if (r.remaining !== 0) return bad(`${r.remaining} unexpected trailing bytes`);
  return ok({
    itemId,
    kind,
    flags,
    deviceId: Buffer.from(dev).toString('utf8'),
    startedAt: Number(startedAt),
    codec: Buffer.from(codec).toString('utf8'),
    chunkSize,
    recipients,
  });
}

export function headerDigest(encodedCore: Uint8Array): Buffer {
  return createHash('sha256').update(DIGEST_LABEL).update(encodedCore).digest();
}

/**
 * Seal as parts: the ciphertext exactly as the cipher returned it, then the tag
 * (ChaCha20-Poly1305 is a stream cipher: final() yields no bytes). No copy is
 * made here; callers write the parts (writev) or copy them once into a record.
 */
function aeadParts(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plain: Uint8Array,
): Buffer[] {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LENGTH });
  c.setAAD(aad, { plaintextLength: plain.length });
  const body = c.update(plain);
  const rest = c.final();
  return rest.length === 0 ? [body, c.getAuthTag()] : [body, rest, c.getAuthTag()];
}

function aead(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array): Buffer {
  return Buffer.concat(aeadParts(key, nonce, aad, plain));
}

function aeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
): Buffer | undefined {
  if (sealed.length < TAG_LENGTH) return undefined;
  const body = sealed.subarray(0, sealed.length - TAG_LENGTH);
  const tag = sealed.subarray(sealed.length - TAG_LENGTH);
  try {
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LENGTH });
    d.setAAD(aad, { plaintextLength: body.length });
    d.setAuthTag(tag);
    // update() returns the plaintext; final() only verifies the tag (no bytes for a stream cipher)
    const plain = d.update(body);
    const rest = d.final();
    return rest.length === 0 ? plain : Buffer.concat([plain, rest]);
  } catch {
    return undefined;
  }
}

function wrapAad(digest: Uint8Array, recipientIndex: number): Buffer {
  return Buffer.concat([WRAP_LABEL, digest, Buffer.from([recipientIndex])]);
}

/** Wrap the content key for recipient `index` under its exported wrap key. */
export function wrapContentKey(
  wrapKey: Uint8Array,
  cek: Uint8Array,
  digest: Uint8Array,
  index: number,
): Buffer {
  if (wrapKey.length !== KEY_LENGTH || cek.length !== KEY_LENGTH)
    throw new ContainerError('ECONTAINER_FORMAT', 'keys must be 32 bytes');
  return aead(wrapKey, ZERO_NONCE, wrapAad(digest, index), cek);
}

/**
 * Unwrap the content key for recipient `index`. Failure means the header was
 * altered (any byte of the core) or the wrap key is not this item's.
 */
export function unwrapContentKey(
  wrapKey: Uint8Array,
  header: ParsedHeader,
  index: number,
): ContainerResult<Buffer> {
  const wrapped = header.wraps[index];
  if (wrapped === undefined) return fail('ENOT_RECIPIENT', `no recipient #${index} in this item`);
  const cek = aeadOpen(wrapKey, ZERO_NONCE, wrapAad(header.digest, index), wrapped);
  if (cek === undefined)
    return fail(
      'EHEADER_TAMPERED',
      'item header failed authentication (altered header or wrong epoch key)',
    );
  return ok(cek);
}

function recordHeader(type: RecordType, itemId: Uint8Array, index: number, length: number): Buffer {
  return writeRecordHeader(Buffer.allocUnsafe(RECORD_HEADER_LENGTH), type, itemId, index, length);
}

function writeRecordHeader(
  b: Buffer,
  type: RecordType,
  itemId: Uint8Array,
  index: number,
  length: number,
): Buffer {
  b[0] = type;
  b.set(itemId, 1);
  b.writeUInt32BE(index, 1 + ITEM_ID_LENGTH);
  b.writeUInt32BE(length, 5 + ITEM_ID_LENGTH);
  return b;
}

/** The preamble plus the header record (type 1). */
export function encodeHeaderRecord(
  encodedCore: Uint8Array,
  itemId: Uint8Array,
  wraps: readonly Uint8Array[],
): Buffer {
  const body = new ByteWriter().u32(encodedCore.length).bytes(encodedCore).u8(wraps.length);
  for (const w of wraps) {
    if (w.length !== WRAPPED_KEY_LENGTH)
      throw new ContainerError('ECONTAINER_FORMAT', 'wrapped key must be 48 bytes');
    body.bytes(w);
  }
  const b = body.done();
  return Buffer.concat([
    CONTAINER_MAGIC,
    Buffer.from([CONTAINER_VERSION]),
    recordHeader(RECORD_TYPE.header, itemId, 0, b.length),
    b,
  ]);
}

function decodeHeaderBody(
  body: Uint8Array,
  recordItemId: Uint8Array,
): ContainerResult<ParsedHeader> {
  const r = new ByteReader(body);
  const coreLen = r.u32();
  const coreBytes = coreLen === undefined ? undefined : r.bytes(coreLen);
  const n = r.u8();
  if (coreBytes === undefined || n === undefined)
    return fail('ECONTAINER_FORMAT', 'header record truncated');
  const core = decodeHeaderCore(coreBytes);
  if (!core.ok) return core;
  if (n !== core.value.recipients.length)
    return fail(
      'ECONTAINER_FORMAT',
      `header has ${n} wrapped keys for ${core.value.recipients.length} recipients`,
    );
  const wraps: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const w = r.bytes(WRAPPED_KEY_LENGTH);
    if (w === undefined) return fail('ECONTAINER_FORMAT', 'wrapped key truncated');
    wraps.push(w);
  }
  if (r.remaining !== 0) return fail('ECONTAINER_FORMAT', 'trailing bytes in header record');
  if (!Buffer.from(recordItemId).equals(Buffer.from(core.value.itemId))) {
    return fail('EHEADER_TAMPERED', 'record item id differs from the header core');
  }
  return ok({ core: core.value, digest: headerDigest(coreBytes), wraps });
}

/** The same bytes as a Buffer, without copying (Buffer.from(uint8array) copies). */
function view(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * A chunk's AAD: label | itemId | index u32 | final u8 | digest. One buffer per item
 * (writer or reader): `at` rewrites the index and the flag in place, so the bytes are
 * valid until the next `at` (the cipher absorbs them in setAAD).
 */
class ChunkAad {
  readonly #b: Buffer;
  readonly #at: number;
  constructor(itemId: Uint8Array, digest: Uint8Array) {
    this.#b = Buffer.allocUnsafe(CHUNK_LABEL.length + itemId.length + 5 + digest.length);
    this.#at = CHUNK_LABEL.copy(this.#b, 0) + itemId.length;
    this.#b.set(itemId, CHUNK_LABEL.length);
    this.#b.set(digest, this.#at + 5);
  }
  at(index: number, final: boolean): Buffer {
    this.#b.writeUInt32BE(index, this.#at);
    this.#b[this.#at + 4] = final ? 1 : 0;
    return this.#b;
  }
}

function encodeTrailer(t: Trailer): Buffer {
  const reason = Buffer.from(t.reason, 'utf8').subarray(0, 1024);
  return new ByteWriter()
    .u8(t.status === 'complete' ? 0 : 1)
    .u64(BigInt(Math.max(0, Math.round(t.durationMs))))
    .u32(t.chunkCount)
    .u64(BigInt(t.totalBytes))
    .u16(reason.length)
    .bytes(reason)
    .done();
}

/** An end record's plaintext (the trailer), decoded. */
export function decodeTrailer(bytes: Uint8Array): ContainerResult<Trailer> {
  const r = new ByteReader(bytes);
  const status = r.u8();
  const duration = r.u64();
  const count = r.u32();
  const total = r.u64();
  const rl = r.u16();
  const reason = rl === undefined ? undefined : r.bytes(rl);
  if (
    status === undefined ||
    duration === undefined ||
    count === undefined ||
    total === undefined ||
    reason === undefined ||
    r.remaining !== 0
  ) {
    return fail('ECONTAINER_FORMAT', 'end record trailer malformed');
  }
  if (status > 1) return fail('ECONTAINER_FORMAT', `unknown end status ${status}`);
  return ok({
    status: status === 0 ? 'complete' : 'aborted',
    durationMs: Number(duration),
    chunkCount: count,
    totalBytes: Number(total),
    reason: Buffer.from(reason).toString('utf8'),
  });
}

// ---- writer -------------------------------------------------------------------

export interface SealedHeader {
  /** Preamble + header record: the first bytes of the item. */
  readonly record: Buffer;
  readonly digest: Buffer;
  readonly encodedCore: Buffer;
}

/**
 * Build the header: `wrapKeys[i]` is recipient i's exported wrap key. Returns
 * the record to emit first.
 */
export function sealHeader(
  core: HeaderCore,
  cek: Uint8Array,
  wrapKeys: readonly Uint8Array[],
): SealedHeader {
  if (wrapKeys.length !== core.recipients.length)
    throw new ContainerError('ECONTAINER_FORMAT', 'one wrap key per recipient');
  const encodedCore = encodeHeaderCore(core);
  const digest = headerDigest(encodedCore);
  const wraps = wrapKeys.map((k, i) => wrapContentKey(k, cek, digest, i));
  return { record: encodeHeaderRecord(encodedCore, core.itemId, wraps), digest, encodedCore };
}

/**
 * Seals one item's chunks. Each `seal(plain)` returns records ready to append;
 * nothing is buffered across calls (a live fragment leaves at once). `end()`
 * writes the final record; after it the writer refuses more data.
 */
export class ContainerWriter {
  readonly itemId: Uint8Array;
  readonly chunkSize: number;
  readonly #cek: Buffer;
  /** This item's nonce and AAD, rewritten in place per record (the cipher copies both at once). */
  readonly #nonce = Buffer.alloc(12);
  readonly #aad: ChunkAad;
  #index = 0;
  #total = 0;
  #ended = false;

  constructor(cek: Uint8Array, itemId: Uint8Array, digest: Uint8Array, chunkSize: number) {
    if (cek.length !== KEY_LENGTH)
      throw new ContainerError('ECONTAINER_FORMAT', 'content key must be 32 bytes');
    this.#cek = Buffer.from(cek);
    this.itemId = itemId;
    this.#aad = new ChunkAad(itemId, digest);
    this.chunkSize = chunkSize;
  }

  get chunkCount(): number {
    return this.#index;
  }
  get totalBytes(): number {
    return this.#total;
  }
  get ended(): boolean {
    return this.#ended;
  }

  /** Seal plaintext as one or more data records (at most chunkSize each), one buffer per record. */
  seal(plain: Uint8Array): Buffer[] {
    return this.sealRecords(plain).map((parts) => Buffer.concat(parts));
  }

  /**
   * The zero-copy form of `seal`: every record as its parts (record header,
   * ciphertext as the cipher produced it, tag), in order, for a vectored write
   * (writev). The bytes are those of `seal`, without assembling them.
   */
  sealParts(plain: Uint8Array): Buffer[] {
    return this.sealRecords(plain).flat();
  }

  /** Records of `plain`, each as its parts (the record headers of one call share one allocation). */
  sealRecords(plain: Uint8Array): Buffer[][] {
    if (this.#ended) throw new ContainerError('ECONTAINER_FORMAT', 'item already ended');
    const n = Math.ceil(plain.length / this.chunkSize);
    const heads = Buffer.allocUnsafe(n * RECORD_HEADER_LENGTH);
    const out: Buffer[][] = [];
    for (let i = 0, off = 0; i < n; i++, off += this.chunkSize) {
      const piece = plain.subarray(off, Math.min(plain.length, off + this.chunkSize));
      const head = heads.subarray(i * RECORD_HEADER_LENGTH, (i + 1) * RECORD_HEADER_LENGTH);
      out.push(this.#record(RECORD_TYPE.data, piece, false, head));
      this.#total += piece.length;
    }
    return out;
  }

  /** The end record; marks the item complete or aborted. */
  end(status: EndStatus, durationMs: number, reason = ''): Buffer {
    if (this.#ended) throw new ContainerError('ECONTAINER_FORMAT', 'item already ended');
    const trailer = encodeTrailer({
      status,
      durationMs,
      chunkCount: this.#index,
      totalBytes: this.#total,
      reason,
    });
    const rec = this.#record(
      RECORD_TYPE.end,
      trailer,
      true,
      Buffer.allocUnsafe(RECORD_HEADER_LENGTH),
    );
    this.#ended = true;
    this.#cek.fill(0);
    return Buffer.concat(rec);
  }

  /** Record header (written into `head`), ciphertext, tag. */
  #record(type: RecordType, plain: Uint8Array, final: boolean, head: Buffer): Buffer[] {
    const index = this.#index;
    if (index >= 0xffffffff) throw new ContainerError('ECONTAINER_FORMAT', 'too many chunks');
    this.#nonce.writeUInt32BE(index, 8);
    const c = createCipheriv('chacha20-poly1305', this.#cek, this.#nonce, {
      authTagLength: TAG_LENGTH,
    });
    c.setAAD(this.#aad.at(index, final), { plaintextLength: plain.length });
    const body = c.update(plain);
    const rest = c.final(); // ChaCha20 is a stream cipher: no bytes here
    const tag = c.getAuthTag();
    this.#index += 1;
    writeRecordHeader(head, type, this.itemId, index, body.length + rest.length + tag.length);
    return rest.length === 0 ? [head, body, tag] : [head, body, rest, tag];
  }
}

/** Random 16-byte item id and 32-byte content key (`random` fixes them in tests and vectors). */
export function newItemId(random: RandomSource = cryptoRandom): Buffer {
  return randomOf(random, ITEM_ID_LENGTH);
}
export function newContentKey(random: RandomSource = cryptoRandom): Buffer {
  return randomOf(random, KEY_LENGTH);
}
function randomOf(random: RandomSource, n: number): Buffer {
  const b = random(n);
  if (b.length !== n)
    throw new ContainerError('ECONTAINER_FORMAT', `random source gave ${b.length} bytes, not ${n}`);
  return Buffer.from(b);
}

// ---- reader -------------------------------------------------------------------

export type ReaderEvent =
  | { readonly type: 'header'; readonly header: ParsedHeader }
  | { readonly type: 'chunk'; readonly index: number; readonly plaintext: Buffer }
  | { readonly type: 'end'; readonly trailer: Trailer };

/**
 * Incremental reader. Feed bytes with `push` as they arrive; it yields the
 * header as soon as it is complete. Chunks are decrypted once `setKey` has
 * been given the content key (after the MLS layer processed the header); until
 * then complete records wait in the buffer. Any error poisons the reader.
 */
export class ContainerReader {
  #buf: Buffer = Buffer.alloc(0);
  #preambleSeen = false;
  #header: ParsedHeader | undefined;
  #cek: Buffer | undefined;
  #scratch: RecordScratch | undefined;
  #next = 0;
  #total = 0;
  #trailer: Trailer | undefined;
  #error: Failure<ContainerErrorCode> | undefined;

  get header(): ParsedHeader | undefined {
    return this.#header;
  }
  get trailer(): Trailer | undefined {
    return this.#trailer;
  }
  get done(): boolean {
    return this.#trailer !== undefined;
  }

  setKey(cek: Uint8Array): void {
    this.#cek = Buffer.from(cek);
  }

  /**
   * Feed the next bytes. Whole records are read in place (views into `bytes`,
   * no copy); only what is left over (a partial record, or records waiting for
   * `setKey`) is copied, so the caller may reuse `bytes` once this returns.
   */
  push(bytes: Uint8Array): ContainerResult<ReaderEvent[]> {
    if (this.#error) return this.#error;
    let borrowed = false;
    if (bytes.length > 0) {
      if (this.#buf.length === 0) {
        this.#buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        borrowed = true;
      } else this.#buf = Buffer.concat([this.#buf, bytes]);
    }
    const r = this.#drain();
    if (!r.ok) this.#error = r;
    if (borrowed && this.#buf.length > 0) this.#buf = Buffer.from(this.#buf);
    return r;
  }

  /** Call when the byte stream ended: reports truncation if the end record is missing. */
  finish(): ContainerResult<Trailer> {
    if (this.#error) return this.#error;
    if (this.#trailer === undefined) {
      const where =
        this.#header === undefined
          ? 'before the header was complete'
          : `after ${this.#next} chunk(s)`;
      return fail('EITEM_TRUNCATED', `item truncated ${where}: no end record`);
    }
    return ok(this.#trailer);
  }

  #drain(): ContainerResult<ReaderEvent[]> {
    const events: ReaderEvent[] = [];
    if (!this.#preambleSeen) {
      if (this.#buf.length < PREAMBLE_LENGTH) return ok(events);
      if (!this.#buf.subarray(0, 4).equals(CONTAINER_MAGIC))
        return fail('ECONTAINER_FORMAT', 'not a Vigil container (bad magic)');
      const v = this.#buf[4];
      if (v !== CONTAINER_VERSION)
        return fail('ECONTAINER_FORMAT', `unsupported container version ${String(v)}`);
      this.#preambleSeen = true;
      this.#buf = this.#buf.subarray(PREAMBLE_LENGTH);
    }
    for (;;) {
      if (this.#trailer !== undefined) {
        if (this.#buf.length > 0)
          return fail('ETRAILING_DATA', `${this.#buf.length} bytes after the end record`);
        return ok(events);
      }
      if (this.#buf.length < RECORD_HEADER_LENGTH) return ok(events);
      const type = this.#buf[0] ?? 0;
      const itemId = this.#buf.subarray(1, 17);
      const index = this.#buf.readUInt32BE(17);
      const length = this.#buf.readUInt32BE(21);
      const limit =
        type === RECORD_TYPE.header
          ? MAX_HEADER_LENGTH
          : (this.#header?.core.chunkSize ?? MAX_CHUNK_SIZE) + TAG_LENGTH + 2048;
      if (type < 1 || type > 3) return fail('ECONTAINER_FORMAT', `unknown record type ${type}`);
      if (length > limit)
        return fail('ECONTAINER_FORMAT', `record of ${length} bytes exceeds the limit ${limit}`);
      if (this.#header === undefined) {
        if (type !== RECORD_TYPE.header)
          return fail('ECONTAINER_FORMAT', 'first record is not a header');
      } else if (type === RECORD_TYPE.header) {
        return fail('ECONTAINER_FORMAT', 'second header record in one item');
      }
      if (this.#buf.length < RECORD_HEADER_LENGTH + length) return ok(events);
      if (type !== RECORD_TYPE.header && this.#cek === undefined) return ok(events); // wait for setKey
      const body = this.#buf.subarray(RECORD_HEADER_LENGTH, RECORD_HEADER_LENGTH + length);
      if (type === RECORD_TYPE.header) {
        const h = decodeHeaderBody(body, itemId);
        if (!h.ok) return h;
        this.#header = h.value;
        events.push({ type: 'header', header: h.value });
      } else {
        const header = this.#header as ParsedHeader;
        this.#scratch ??= scratchFor(header);
        const opened = openRecord(
          header,
          this.#cek as Buffer,
          type,
          itemId,
          index,
          body,
          this.#next,
          this.#scratch,
        );
        if (!opened.ok) return opened;
        if (type === RECORD_TYPE.data) {
          this.#total += opened.value.length;
          events.push({ type: 'chunk', index, plaintext: opened.value });
        } else {
          const t = decodeTrailer(opened.value);
          if (!t.ok) return t;
          if (t.value.chunkCount !== this.#next || t.value.totalBytes !== this.#total) {
            return fail(
              'EITEM_TRUNCATED',
              `end record counts ${t.value.chunkCount} chunks/${t.value.totalBytes} bytes, received ${this.#next}/${this.#total}`,
            );
          }
          this.#trailer = t.value;
          events.push({ type: 'end', trailer: t.value });
        }
        this.#next += 1;
      }
      this.#buf = this.#buf.subarray(RECORD_HEADER_LENGTH + length);
    }
  }
}

/** What opening a record rewrites in place: the nonce and the AAD (one of each per item). */
interface RecordScratch {
  readonly nonce: Buffer;
  readonly aad: ChunkAad;
}
function scratchFor(header: ParsedHeader): RecordScratch {
  return { nonce: Buffer.alloc(12), aad: new ChunkAad(header.core.itemId, header.digest) };
}

function openRecord(
  header: ParsedHeader,
  cek: Buffer,
  type: number,
  recordItemId: Uint8Array,
  index: number,
  body: Uint8Array,
  expected: number,
  scratch: RecordScratch = scratchFor(header),
): ContainerResult<Buffer> {
  const itemId = header.core.itemId;
  if (!view(recordItemId).equals(itemId)) {
    return fail(
      'ECHUNK_SPLICED',
      `chunk ${index} belongs to another item (${Buffer.from(recordItemId).toString('hex')})`,
    );
  }
  if (index !== expected) {
    return fail(
      'ECHUNK_REORDERED',
      `chunk ${index} arrived where chunk ${expected} was expected (reordered or missing chunks)`,
    );
  }
  const final = type === RECORD_TYPE.end;
  scratch.nonce.writeUInt32BE(index, 8);
  const plain = aeadOpen(cek, scratch.nonce, scratch.aad.at(index, final), body);
  if (plain === undefined) {
    return fail(
      'ECHUNK_TAMPERED',
      `chunk ${index} failed authentication (altered bytes or a chunk from another item)`,
    );
  }
  return ok(plain);
}

// ---- seeking ------------------------------------------------------------------

export interface RecordRef {
  readonly type: RecordType;
  readonly index: number;
  /** Offset of the record header within the item bytes. */
  readonly offset: number;
  /** Total record length including its 25-byte header. */
  readonly length: number;
}

/**
 * Walk the record headers of (a prefix of) an item without decrypting: the
 * index for seeking. Incomplete trailing records are left out.
 */
export function indexRecords(
  bytes: Uint8Array,
): ContainerResult<{ header: ParsedHeader; records: RecordRef[] }> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < PREAMBLE_LENGTH + RECORD_HEADER_LENGTH)
    return fail('EITEM_TRUNCATED', 'item shorter than its header');
  if (!b.subarray(0, 4).equals(CONTAINER_MAGIC) || b[4] !== CONTAINER_VERSION)
    return fail('ECONTAINER_FORMAT', 'not a Vigil container v1');
  let off = PREAMBLE_LENGTH;
  let header: ParsedHeader | undefined;
  const records: RecordRef[] = [];
  while (off + RECORD_HEADER_LENGTH <= b.length) {
    const type = b[off] ?? 0;
    const index = b.readUInt32BE(off + 17);
    const length = b.readUInt32BE(off + 21);
    if (type < 1 || type > 3)
      return fail('ECONTAINER_FORMAT', `unknown record type ${type} at offset ${off}`);
    if (off + RECORD_HEADER_LENGTH + length > b.length) break;
    if (type === RECORD_TYPE.header) {
      if (header !== undefined) return fail('ECONTAINER_FORMAT', 'second header record');
      const h = decodeHeaderBody(
        b.subarray(off + RECORD_HEADER_LENGTH, off + RECORD_HEADER_LENGTH + length),
        b.subarray(off + 1, off + 17),
      );
      if (!h.ok) return h;
      header = h.value;
    } else {
      records.push({
        type: type as RecordType,
        index,
        offset: off,
        length: RECORD_HEADER_LENGTH + length,
      });
    }
    off += RECORD_HEADER_LENGTH + length;
  }
  if (header === undefined) return fail('EITEM_TRUNCATED', 'item shorter than its header');
  return ok({ header, records });
}

/**
 * Decrypt the data chunk number `chunk` (0-based) by itself: the seek path. The
 * record at `ref` must be the chunk-th record after the header.
 */
export function openChunkAt(
  bytes: Uint8Array,
  header: ParsedHeader,
  cek: Uint8Array,
  ref: RecordRef,
  chunk: number,
): ContainerResult<Buffer> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (ref.offset + ref.length > b.length)
    return fail('EITEM_TRUNCATED', 'record beyond the available bytes');
  const itemId = b.subarray(ref.offset + 1, ref.offset + 17);
  const index = b.readUInt32BE(ref.offset + 17);
  const body = b.subarray(ref.offset + RECORD_HEADER_LENGTH, ref.offset + ref.length);
  return openRecord(header, Buffer.from(cek), ref.type, itemId, index, body, chunk);
}

/** Parse just the header at the start of an item (streaming clients use ContainerReader). */
export function parseHeader(
  bytes: Uint8Array,
): ContainerResult<{ header: ParsedHeader; length: number }> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < PREAMBLE_LENGTH + RECORD_HEADER_LENGTH)
    return fail('EITEM_TRUNCATED', 'item shorter than its header');
  if (!b.subarray(0, 4).equals(CONTAINER_MAGIC))
    return fail('ECONTAINER_FORMAT', 'not a Vigil container (bad magic)');
  if (b[4] !== CONTAINER_VERSION)
    return fail('ECONTAINER_FORMAT', `unsupported container version ${String(b[4])}`);
  if (b[PREAMBLE_LENGTH] !== RECORD_TYPE.header)
    return fail('ECONTAINER_FORMAT', 'first record is not a header');
  const length = b.readUInt32BE(PREAMBLE_LENGTH + 21);
  if (length > MAX_HEADER_LENGTH) return fail('ECONTAINER_FORMAT', 'header record too large');
  const end = PREAMBLE_LENGTH + RECORD_HEADER_LENGTH + length;
  if (end > b.length) return fail('EITEM_TRUNCATED', 'item shorter than its header');
  const h = decodeHeaderBody(
    b.subarray(PREAMBLE_LENGTH + RECORD_HEADER_LENGTH, end),
    b.subarray(PREAMBLE_LENGTH + 1, PREAMBLE_LENGTH + 17),
  );
  if (!h.ok) return h;
  return ok({ header: h.value, length: end });
}
