/**
 * E2EE wire frames (pure, no I/O), specified byte by byte in docs/protocol.md.
 *
 * Two families, both encoded as one UTF-8 JSON object per frame (binary fields
 * in unpadded base64url), validated with zod on decode:
 *
 *  - Pairing frames, exchanged over any reliable transport (the hotspot's TCP
 *    frame server adds the length prefix): hello / hello-ack (version
 *    negotiation + time sync + credentials), then per group key-package ->
 *    welcome, then confirm -> paired. `error` aborts from either side.
 *  - Config messages: the plaintext of MLS application messages in a phone's
 *    config group (heartbeats and their acks, admin requests, and an `app`
 *    envelope that other areas use for Wi-Fi credentials, unlock, escrow and
 *    OTA reports).
 *
 * `decodeFrame` / `decodeConfigMessage` never throw: they return a result.
 */
import { z } from 'zod';
import { ValidationError } from '../base/errors.js';
import { fail, ok, type Result } from '../base/result.js';
import { E2EE_PROTOCOL_VERSION, GROUP_KINDS } from './mls-profile.js';

/** Largest frame either side accepts (a Welcome with the ratchet tree is ~10 KiB). */
export const MAX_FRAME_BYTES = 256 * 1024;
export const SUPPORTED_VERSIONS: readonly number[] = [E2EE_PROTOCOL_VERSION];

const B64URL = /^[A-Za-z0-9_-]*$/;
export function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}
export function unb64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'base64url'));
}
const bytesField = (max: number) =>
  z
    .string()
    .max(Math.ceil((max * 4) / 3) + 4)
    .regex(B64URL, 'base64url expected');
const groupKind = z.enum(GROUP_KINDS);
const hexId = z.string().regex(/^[0-9a-f]{8,64}$/, 'lower-case hex id expected');
const epochStr = z.string().regex(/^[0-9]{1,20}$/, 'decimal epoch expected');
const timeMs = z.number().int().nonnegative().max(8.64e15);

// ---- pairing frames -------------------------------------------------------------

export const HelloFrame = z.strictObject({
  t: z.literal('hello'),
  versions: z.array(z.number().int().positive()).min(1).max(16),
  phoneTime: timeMs,
  phoneId: hexId,
  signaturePublicKey: bytesField(64),
  pskId: bytesField(128),
});
export const HelloAckFrame = z.strictObject({
  t: z.literal('hello-ack'),
  version: z.number().int().positive(),
  hubTime: timeMs,
  deviceId: z.string().min(1).max(64),
  signaturePublicKey: bytesField(64),
  groups: z.array(groupKind).min(1).max(GROUP_KINDS.length),
});
export const KeyPackageFrame = z.strictObject({
  t: z.literal('key-package'),
  group: groupKind,
  keyPackage: bytesField(64 * 1024),
});
export const WelcomeFrame = z.strictObject({
  t: z.literal('welcome'),
  group: groupKind,
  groupId: bytesField(64),
  welcome: bytesField(192 * 1024),
});
export const ConfirmFrame = z.strictObject({
  t: z.literal('confirm'),
  mac: bytesField(64),
});
export const PairedFrame = z.strictObject({
  t: z.literal('paired'),
  phoneId: hexId,
  admin: z.boolean(),
});
export const ErrorFrame = z.strictObject({
  t: z.literal('error'),
  code: z.string().min(1).max(64),
  message: z.string().max(500),
});

/** The `error` frame codes of docs/protocol.md section 2, shared by both pairing ends. */
export type PairingErrorCode =
  | 'EVERSION'
  | 'EPSK_UNKNOWN'
  | 'EPSK_MISMATCH'
  | 'EFOREIGN_KEY_PACKAGE'
  | 'EKEY_PACKAGE_INVALID'
  | 'EKEY_PACKAGE_LIFETIME'
  | 'EPHONE_EXISTS'
  | 'EUNEXPECTED_FRAME'
  | 'EPEER_ABORTED'
  | 'EABORTED'
  | 'EPAIRING_FAILED';

export const PairingFrame = z.discriminatedUnion('t', [
  HelloFrame,
  HelloAckFrame,
  KeyPackageFrame,
  WelcomeFrame,
  ConfirmFrame,
  PairedFrame,
  ErrorFrame,
]);
export type PairingFrame = z.infer<typeof PairingFrame>;
export type HelloFrame = z.infer<typeof HelloFrame>;
export type HelloAckFrame = z.infer<typeof HelloAckFrame>;
export type KeyPackageFrame = z.infer<typeof KeyPackageFrame>;
export type WelcomeFrame = z.infer<typeof WelcomeFrame>;
export type ConfirmFrame = z.infer<typeof ConfirmFrame>;
export type PairedFrame = z.infer<typeof PairedFrame>;
export type ErrorFrame = z.infer<typeof ErrorFrame>;

/**
 * What `decodeFrame` / `decodeConfigMessage` return (base/result.ts); the code
 * is ValidationError's, which callers that throw raise with the reason.
 */
export type DecodeResult<T> = Result<T, 'EVALIDATION'>;

function decodeJson<T>(bytes: Uint8Array, schema: z.ZodType<T>, what: string): DecodeResult<T> {
  if (bytes.length > MAX_FRAME_BYTES)
    return fail('EVALIDATION', `${what} of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return fail('EVALIDATION', `${what} is not UTF-8 JSON`);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    return fail(
      'EVALIDATION',
      `invalid ${what}: ${path ? path + ': ' : ''}${issue?.message ?? 'schema mismatch'}`,
    );
  }
  return ok(r.data);
}

export function encodeFrame(f: PairingFrame): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(PairingFrame.parse(f)));
  if (bytes.length > MAX_FRAME_BYTES)
    throw new ValidationError(`frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  return bytes;
}

/** Decode a pairing frame; a result, never an exception. */
export function decodeFrame(bytes: Uint8Array): DecodeResult<PairingFrame> {
  return decodeJson(bytes, PairingFrame, 'pairing frame');
}

export function errorFrame(code: string, message: string): ErrorFrame {
  return { t: 'error', code: code.slice(0, 64), message: message.slice(0, 500) };
}

// ---- config-group messages ---------------------------------------------------------

const epochsMap = z.partialRecord(groupKind, epochStr);
/** Per group: the 16-byte epoch check (MLS-Exporter length 16, base64url) proving both sides share the epoch. */
const epochChecks = z.partialRecord(groupKind, bytesField(16));

export const RefreshOffer = z.strictObject({ group: groupKind, keyPackage: bytesField(64 * 1024) });

export const HeartbeatMessage = z.strictObject({
  t: z.literal('heartbeat'),
  seq: z.number().int().nonnegative(),
  sentAt: timeMs,
  epochs: epochsMap,
  checks: epochChecks,
  /** Items the phone holds durably (hex item ids): the hub may delete its copies. */
  acks: z.array(hexId).max(1000),
  /** Fresh key packages for phone refresh by re-add. */
  refresh: z.array(RefreshOffer).max(GROUP_KINDS.length),
});
export type HeartbeatMessage = z.infer<typeof HeartbeatMessage>;

export const CatchUp = z.strictObject({
  group: groupKind,
  epoch: epochStr,
  handshake: bytesField(192 * 1024),
});
export const DesyncReport = z.strictObject({
  group: groupKind,
  phoneEpoch: epochStr,
  hubEpoch: epochStr,
  reason: z.string().max(300),
});
export type DesyncReport = z.infer<typeof DesyncReport>;

export const HeartbeatAckMessage = z.strictObject({
  t: z.literal('heartbeat-ack'),
  seq: z.number().int().nonnegative(),
  hubTime: timeMs,
  epochs: epochsMap,
  /** Handshakes the phone missed, oldest first. */
  catchUp: z.array(CatchUp).max(2000),
  acknowledged: z.array(hexId).max(1000),
  desync: z.array(DesyncReport).max(2 * GROUP_KINDS.length),
  /**
   * Items the hub dropped unsent since this phone's last ack, because its upload backlog
   * passed its bounds while the relay was away (added in protocol 1.1; a hub sends it
   * only when `items > 0`, so acks to phones that predate it are unchanged otherwise).
   */
  dropped: z
    .strictObject({
      items: z.number().int().positive(),
      reason: z.literal('relay-outage'),
    })
    .optional(),
});
export type HeartbeatAckMessage = z.infer<typeof HeartbeatAckMessage>;

export const InviteRequestMessage = z.strictObject({
  t: z.literal('invite-request'),
  requestId: hexId,
});
export const InviteMessage = z.strictObject({
  t: z.literal('invite'),
  requestId: hexId,
  deviceId: z.string().min(1).max(64),
  pskId: bytesField(128),
  psk: bytesField(64),
  expiresAt: timeMs,
});
export const RemoveRequestMessage = z.strictObject({
  t: z.literal('remove-request'),
  requestId: hexId,
  phoneId: hexId,
});
export const RemovedMessage = z.strictObject({
  t: z.literal('removed'),
  requestId: hexId,
  phoneId: hexId,
});
export const RequestFailedMessage = z.strictObject({
  t: z.literal('request-failed'),
  requestId: hexId,
  code: z.string().min(1).max(64),
  message: z.string().max(500),
});
/** Envelope for other areas' payloads (Wi-Fi credentials, unlock, escrow, OTA reports). */
export const AppMessage = z.strictObject({
  t: z.literal('app'),
  topic: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
  body: bytesField(128 * 1024),
});
export const NoticeMessage = z.strictObject({
  t: z.literal('notice'),
  at: timeMs,
  kind: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
  itemId: hexId.optional(),
  text: z.string().max(500),
  /** What the hub's object detector saw (a motion notice): best score per class. */
  objects: z
    .array(
      z.strictObject({
        class: z.string().regex(/^[a-z][a-z ]{0,31}$/),
        score: z.number().min(0).max(1),
      }),
    )
    .max(16)
    .optional(),
});

export const ConfigMessage = z.discriminatedUnion('t', [
  HeartbeatMessage,
  HeartbeatAckMessage,
  InviteRequestMessage,
  InviteMessage,
  RemoveRequestMessage,
  RemovedMessage,
  RequestFailedMessage,
  AppMessage,
  NoticeMessage,
]);
export type ConfigMessage = z.infer<typeof ConfigMessage>;
export type InviteMessage = z.infer<typeof InviteMessage>;
export type AppMessage = z.infer<typeof AppMessage>;
export type NoticeMessage = z.infer<typeof NoticeMessage>;

export function encodeConfigMessage(m: ConfigMessage): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(ConfigMessage.parse(m)));
}

export function decodeConfigMessage(bytes: Uint8Array): DecodeResult<ConfigMessage> {
  return decodeJson(bytes, ConfigMessage, 'config message');
}
