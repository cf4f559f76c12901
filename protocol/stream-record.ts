/**
 * Stream records (docs/protocol.md section 4.4): the plaintext the hub seals
 * as one MLS application message in a phone's `config` group (data lane) or
 * `notification` group (notice lane) when a privacy mode is on (docs/relay.md "Privacy modes"). A record has a fixed
 * length chosen by the hub; it carries fragments of real items (containers,
 * notices) or nothing at all (a cover record), followed by zero padding. The
 * relay only ever sees the MLS ciphertext, whose length follows from the
 * record's length alone, so a cover record and a full one look the same.
 *
 *   magic "VGSR" | version u8 = 1 | fragmentCount u16 | fragment* | zero padding
 *   fragment: kind u8 (1 clip, 2 thumbnail, 3 notice) | idLength u8 | id (ASCII)
 *             | offset u32 | length u32 | final u8 (0/1) | bytes [length]
 *
 * Pure: no I/O. The decoder returns a coded result (base/result.ts).
 */
import { fail, ok, type Result } from '../base/result.js';

export const STREAM_MAGIC = Buffer.from('VGSR', 'ascii');
export const STREAM_VERSION = 1;
/** magic + version + fragment count. */
export const STREAM_HEADER_BYTES = 7;
/** A fragment's fixed part, without its id. */
export const FRAGMENT_FIXED_BYTES = 11;
/** Smallest record a hub may use (room for the header and one 64-character id). */
export const STREAM_MIN_RECORD_BYTES = 256;
/** Largest record (fits the relay's 4 MiB append with the MLS overhead). */
export const STREAM_MAX_RECORD_BYTES = 2 * 1024 * 1024;

export const FRAGMENT_KINDS = ['clip', 'thumbnail', 'notice'] as const;
export type FragmentKind = (typeof FRAGMENT_KINDS)[number];

export interface Fragment {
  readonly kind: FragmentKind;
  /** Container item id (hex) for media; any id for a notice. 1..64 chars `[A-Za-z0-9_-]`. */
  readonly id: string;
  /** Byte offset of `bytes` in the item. */
  readonly offset: number;
  /** The item's last bytes. */
  readonly final: boolean;
  readonly bytes: Uint8Array;
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Bytes a fragment takes in a record. */
export function fragmentSize(id: string, length: number): number {
  return FRAGMENT_FIXED_BYTES + id.length + length;
}

/** True when the plaintext of an MLS application message is a stream record (not JSON). */
export function isStreamRecord(plain: Uint8Array): boolean {
  return plain.length >= STREAM_HEADER_BYTES && STREAM_MAGIC.equals(plain.subarray(0, 4));
}

/** Encode fragments into a record of exactly `recordBytes` (zero-padded). Throws if they do not fit. */
export function encodeStreamRecord(
  fragments: readonly Fragment[],
  recordBytes: number,
): Uint8Array {
  if (
    !Number.isInteger(recordBytes) ||
    recordBytes < STREAM_MIN_RECORD_BYTES ||
    recordBytes > STREAM_MAX_RECORD_BYTES
  )
    throw new RangeError(
      `record size must be ${STREAM_MIN_RECORD_BYTES}..${STREAM_MAX_RECORD_BYTES} bytes, got ${recordBytes}`,
    );
  if (fragments.length > 0xffff) throw new RangeError('too many fragments for one record');
  const out = Buffer.alloc(recordBytes);
  STREAM_MAGIC.copy(out, 0);
  out.writeUInt8(STREAM_VERSION, 4);
  out.writeUInt16BE(fragments.length, 5);
  let at = STREAM_HEADER_BYTES;
  for (const f of fragments) {
    if (!ID_RE.test(f.id)) throw new RangeError(`fragment id ${JSON.stringify(f.id)} is invalid`);
    const need = fragmentSize(f.id, f.bytes.length);
    if (at + need > recordBytes)
      throw new RangeError(`fragments need more than the record's ${recordBytes} bytes`);
    out.writeUInt8(FRAGMENT_KINDS.indexOf(f.kind) + 1, at);
    out.writeUInt8(f.id.length, at + 1);
    out.write(f.id, at + 2, 'ascii');
    at += 2 + f.id.length;
    out.writeUInt32BE(f.offset, at);
    out.writeUInt32BE(f.bytes.length, at + 4);
    out.writeUInt8(f.final ? 1 : 0, at + 8);
    out.set(f.bytes, at + 9);
    at += 9 + f.bytes.length;
  }
  return out;
}

export type StreamRecordCode = 'ESTREAM_FORMAT' | 'ESTREAM_VERSION';

/** Decode a record (any length). A cover record decodes to no fragments. */
export function decodeStreamRecord(plain: Uint8Array): Result<Fragment[], StreamRecordCode> {
  const b = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  if (!isStreamRecord(b)) return fail('ESTREAM_FORMAT', 'stream record: bad magic or too short');
  if (b.readUInt8(4) !== STREAM_VERSION)
    return fail('ESTREAM_VERSION', `stream record: unknown version ${b.readUInt8(4)}`);
  const count = b.readUInt16BE(5);
  const out: Fragment[] = [];
  let at = STREAM_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + 2 > b.length) return fail('ESTREAM_FORMAT', `stream record: fragment ${i} truncated`);
    const kind = FRAGMENT_KINDS[b.readUInt8(at) - 1];
    if (kind === undefined)
      return fail('ESTREAM_FORMAT', `stream record: fragment ${i} has kind ${b.readUInt8(at)}`);
    const idLen = b.readUInt8(at + 1);
    if (at + 2 + idLen + 9 > b.length)
      return fail('ESTREAM_FORMAT', `stream record: fragment ${i} truncated`);
    const id = b.toString('ascii', at + 2, at + 2 + idLen);
    if (!ID_RE.test(id)) return fail('ESTREAM_FORMAT', `stream record: fragment ${i} has a bad id`);
    at += 2 + idLen;
    const offset = b.readUInt32BE(at);
    const length = b.readUInt32BE(at + 4);
    const fin = b.readUInt8(at + 8);
    if (fin > 1) return fail('ESTREAM_FORMAT', `stream record: fragment ${i} final flag ${fin}`);
    if (at + 9 + length > b.length)
      return fail('ESTREAM_FORMAT', `stream record: fragment ${i} runs past the record`);
    out.push({ kind, id, offset, final: fin === 1, bytes: b.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  for (let i = at; i < b.length; i++)
    if (b[i] !== 0) return fail('ESTREAM_FORMAT', 'stream record: padding is not zero');
  return ok(out);
}
