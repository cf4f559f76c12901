/**
 * The pairing transport's framing (hotspot TCP, docs/pairing.md):
 *
 *   u32 BE  length of what follows (2 + payload), at most MAX_WIRE_BODY
 *   u8      transport version (1)
 *   u8      kind: 1 = pairing frame (protocol/e2ee-frames.ts JSON)
 *                 2 = config-group MLS message (Wi-Fi credentials, pairing token)
 *                 3 = status (hub -> phone: JSON, zod-validated: progress and errors)
 *   ...     payload
 *
 * Shared by the hub (firmware/pairing) and the companion (app/pair). Pure, no
 * I/O. The decoder is incremental and bounded: it never buffers more
 * than one maximal frame, and reports the first problem with a specific code.
 */
import { z } from 'zod';
import { CodedError } from '../base/errors.js';
import { fail, ok, type Failure, type Result } from '../base/result.js';
import { MAX_FRAME_BYTES } from './e2ee-frames.js';
import { EnrollTokenSchema, ServiceUrlSchema } from './services.js';

export const TRANSPORT_VERSION = 1;
export const FRAME_KIND = { pairing: 1, config: 2, status: 3 } as const;
export type FrameKind = keyof typeof FRAME_KIND;
const KIND_BY_CODE = new Map<number, FrameKind>(
  Object.entries(FRAME_KIND).map(([k, v]) => [v, k as FrameKind]),
);

/** Largest payload: one pairing frame (a Welcome with its ratchet tree is ~10 KiB; cap 256 KiB). */
export const MAX_PAYLOAD = MAX_FRAME_BYTES;
export const MAX_WIRE_BODY = MAX_PAYLOAD + 2;
export const HEADER_BYTES = 6;

export type FrameErrorCode =
  | 'EFRAME_TOO_LARGE'
  | 'EFRAME_EMPTY'
  | 'EFRAME_VERSION'
  | 'EFRAME_KIND'
  | 'EFRAME_TRUNCATED'
  | 'EFRAME_PAYLOAD'
  | 'EFRAME_UNEXPECTED';

export class FrameError extends CodedError<FrameErrorCode> {}

export interface WireFrame {
  readonly kind: FrameKind;
  readonly payload: Uint8Array;
}

export function encodeWireFrame(f: WireFrame): Buffer {
  if (f.payload.length > MAX_PAYLOAD)
    throw new FrameError(
      'EFRAME_TOO_LARGE',
      `payload of ${f.payload.length} bytes exceeds ${MAX_PAYLOAD}`,
    );
  const out = Buffer.alloc(HEADER_BYTES + f.payload.length);
  out.writeUInt32BE(2 + f.payload.length, 0);
  out[4] = TRANSPORT_VERSION;
  out[5] = FRAME_KIND[f.kind];
  out.set(f.payload, HEADER_BYTES);
  return out;
}

export type DecodeStep = { readonly frames: WireFrame[]; readonly error?: FrameError };

/**
 * Incremental decoder. `push` returns the complete frames so far and, at the
 * first malformed header, an error (after which the decoder refuses more).
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #failed: FrameError | undefined;

  get buffered(): number {
    return this.#buffered;
  }

  push(data: Uint8Array): DecodeStep {
    if (this.#failed) return { frames: [], error: this.#failed };
    this.#chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.#buffered += data.byteLength;
    const frames: WireFrame[] = [];
    for (;;) {
      if (this.#buffered < 4) break;
      const head = this.#peek(Math.min(this.#buffered, HEADER_BYTES));
      const len = head.readUInt32BE(0);
      if (len > MAX_WIRE_BODY)
        return this.#fail(
          frames,
          'EFRAME_TOO_LARGE',
          `frame of ${len} bytes exceeds ${MAX_WIRE_BODY}`,
        );
      if (len < 2)
        return this.#fail(frames, 'EFRAME_EMPTY', `frame length ${len} is shorter than its header`);
      if (head.length >= 5 && head[4] !== TRANSPORT_VERSION) {
        return this.#fail(
          frames,
          'EFRAME_VERSION',
          `transport version ${String(head[4])} is not supported (expected ${TRANSPORT_VERSION})`,
        );
      }
      if (head.length >= 6 && !KIND_BY_CODE.has(head[5] ?? -1))
        return this.#fail(frames, 'EFRAME_KIND', `unknown frame kind ${String(head[5])}`);
      if (this.#buffered < 4 + len) break;
      const whole = this.#take(4 + len);
      frames.push({
        kind: KIND_BY_CODE.get(whole[5] ?? 0) ?? 'status',
        payload: new Uint8Array(whole.subarray(HEADER_BYTES)),
      });
    }
    return { frames };
  }

  /** Call at end of stream: bytes of an unfinished frame are an error. */
  end(): FrameError | undefined {
    if (this.#failed) return this.#failed;
    if (this.#buffered > 0)
      return new FrameError(
        'EFRAME_TRUNCATED',
        `connection closed inside a frame (${this.#buffered} bytes pending)`,
      );
    return undefined;
  }

  #fail(frames: WireFrame[], code: FrameErrorCode, message: string): DecodeStep {
    this.#failed = new FrameError(code, message);
    this.#chunks = [];
    this.#buffered = 0;
    return { frames, error: this.#failed };
  }

  #peek(n: number): Buffer {
    if ((this.#chunks[0]?.length ?? 0) >= n)
      return (this.#chunks[0] ?? Buffer.alloc(0)).subarray(0, n);
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all];
    return all.subarray(0, n);
  }

  #take(n: number): Buffer {
    const all =
      this.#chunks.length === 1
        ? (this.#chunks[0] ?? Buffer.alloc(0))
        : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return out;
  }
}

// ---- status frames (hub -> phone) -----------------------------------------------------

export const StatusFrame = z.discriminatedUnion('t', [
  z.strictObject({
    t: z.literal('error'),
    code: z.string().min(1).max(64),
    message: z.string().max(500),
  }),
  z.strictObject({
    t: z.literal('handoff'),
    state: z.enum(['checking', 'network-not-found', 'leaving-hotspot']),
    message: z.string().max(500),
  }),
]);
export type StatusFrame = z.infer<typeof StatusFrame>;

export function encodeStatus(s: StatusFrame): Buffer {
  return encodeWireFrame({
    kind: 'status',
    payload: Buffer.from(JSON.stringify(StatusFrame.parse(s)), 'utf8'),
  });
}

export function decodeStatus(payload: Uint8Array): Result<StatusFrame, 'EFRAME_PAYLOAD'> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    return fail('EFRAME_PAYLOAD', 'status frame is not UTF-8 JSON');
  }
  const r = StatusFrame.safeParse(json);
  if (!r.success)
    return fail('EFRAME_PAYLOAD', `invalid status frame: ${r.error.issues[0]?.message ?? ''}`);
  return ok(r.data);
}

/** A failed decode as a FrameError, for callers that cannot go on and throw. */
export function frameError(f: Failure<FrameErrorCode>): FrameError {
  return new FrameError(f.code, f.reason);
}

// ---- home Wi-Fi credentials (config group, app topic "wifi-credentials") -------------

export const WIFI_CREDENTIALS_TOPIC = 'wifi-credentials';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

/**
 * What the phone sends, sealed in its config group: the home network and a
 * fresh random token both sides use to meet at the relay afterwards.
 */
export const WifiCredentialsBody = z
  .strictObject({
    ssid: z
      .string()
      .refine(
        (s) => Buffer.byteLength(s, 'utf8') >= 1 && Buffer.byteLength(s, 'utf8') <= 32,
        'home network name must be 1-32 bytes',
      )
      .refine((s) => !CONTROL.test(s), 'home network name must not contain control characters'),
    passphrase: z
      .string()
      .min(8, 'Wi-Fi password must be at least 8 characters')
      .max(63, 'Wi-Fi password must be at most 63 characters')
      .regex(/^[\x20-\x7e]*$/, 'Wi-Fi password must be printable ASCII'),
    pairingToken: z.string().regex(/^[0-9a-f]{32}$/, 'pairing token: 32 lower-case hex characters'),
    /**
     * The relay the user runs (protocol version note: optional, added in v1 after
     * the first release; an older phone omits it and the hub keeps its own).
     */
    relayUrl: ServiceUrlSchema.optional(),
    /** The enrollment token that relay asks for (only with relayUrl). */
    relayEnrollToken: EnrollTokenSchema.optional(),
  })
  .refine((c) => c.relayEnrollToken === undefined || c.relayUrl !== undefined, {
    message: 'an enrollment token needs a relay URL',
    path: ['relayEnrollToken'],
  });
export type WifiCredentialsBody = z.infer<typeof WifiCredentialsBody>;

export function encodeWifiCredentials(c: WifiCredentialsBody): Uint8Array {
  return Buffer.from(JSON.stringify(WifiCredentialsBody.parse(c)), 'utf8');
}

export function decodeWifiCredentials(
  bytes: Uint8Array,
): Result<WifiCredentialsBody, 'EFRAME_PAYLOAD'> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return fail('EFRAME_PAYLOAD', 'Wi-Fi credentials are not UTF-8 JSON');
  }
  const r = WifiCredentialsBody.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const field = issue?.path.join('.') ?? '';
    // the relay members' messages name their field; the Wi-Fi ones already read as a sentence
    return fail(
      'EFRAME_PAYLOAD',
      field.startsWith('relay')
        ? `${field} ${issue?.message ?? 'is invalid'}`
        : (issue?.message ?? 'invalid Wi-Fi credentials'),
    );
  }
  return ok(r.data);
}
