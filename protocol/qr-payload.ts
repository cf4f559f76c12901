/**
 * The QR label payload: one string in the QR alphanumeric character set
 * (upper-case base32 and ':'), so the code fits version 4 (33x33 modules) at
 * error correction M.
 *
 *   VIGIL1:<device id, 16 base32>:<secret, 52 base32>:<check, 4 base32>
 *
 * "1" is the payload version. The check is the first 20 bits of
 * SHA-256 over everything before the last ':' — the QR code has its own error
 * correction, the check catches a payload pasted or typed by hand.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { CodedError } from '../base/errors.js';
import { fail, ok, unwrap, type Result } from '../base/result.js';
import { base32Decode, base32Encode, base32Length } from './base32.js';
import { DEVICE_ID_CHARS, SECRET_BYTES, isDeviceId } from './identity.js';
import type { DeviceIdentity } from './identity.js';

export const QR_PREFIX = 'VIGIL';
export const QR_VERSION = 1;
const SECRET_CHARS = base32Length(SECRET_BYTES); // 52
const CHECK_CHARS = 4;
/** Length of a version-1 payload. */
export const QR_PAYLOAD_LENGTH =
  QR_PREFIX.length + 1 + 1 + DEVICE_ID_CHARS + 1 + SECRET_CHARS + 1 + CHECK_CHARS;

export type QrPayloadErrorCode =
  'EQR_FORMAT' | 'EQR_VERSION' | 'EQR_DEVICE_ID' | 'EQR_SECRET' | 'EQR_CHECKSUM';

export class QrPayloadError extends CodedError<QrPayloadErrorCode> {}

function checkOf(body: string): string {
  return base32Encode(createHash('sha256').update(body, 'utf8').digest()).slice(0, CHECK_CHARS);
}

export function encodeQrPayload(identity: DeviceIdentity): string {
  if (!isDeviceId(identity.deviceId)) {
    throw new QrPayloadError('EQR_DEVICE_ID', 'device id is not 16 base32 characters');
  }
  if (identity.secret.length !== SECRET_BYTES) {
    throw new QrPayloadError('EQR_SECRET', `secret must be ${SECRET_BYTES} bytes`);
  }
  const body = `${QR_PREFIX}${QR_VERSION}:${identity.deviceId}:${base32Encode(identity.secret)}`;
  return `${body}:${checkOf(body)}`;
}

/** zod schema: a raw scanned/typed string to a DeviceIdentity, with one specific issue per failure. */
export const QrPayloadSchema = z.string().transform((raw, ctx): DeviceIdentity => {
  const fail = (code: QrPayloadErrorCode, message: string): never => {
    ctx.addIssue({ code: 'custom', message, params: { code } });
    return z.NEVER;
  };
  const text = raw.trim().toUpperCase();
  if (text.length > 4 * QR_PAYLOAD_LENGTH)
    return fail('EQR_FORMAT', 'QR payload is far too long to be a Vigil label');
  if (!text.startsWith(QR_PREFIX))
    return fail(
      'EQR_FORMAT',
      `not a Vigil pairing code (expected it to start with "${QR_PREFIX}")`,
    );
  const parts = text.split(':');
  const head = parts[0] ?? '';
  const version = head.slice(QR_PREFIX.length);
  if (!/^[0-9]+$/.test(version))
    return fail('EQR_FORMAT', 'pairing code has no version number after "VIGIL"');
  if (Number(version) !== QR_VERSION) {
    return fail(
      'EQR_VERSION',
      `pairing code version ${version} is not supported (this software reads version ${QR_VERSION})`,
    );
  }
  if (parts.length !== 4)
    return fail(
      'EQR_FORMAT',
      `pairing code must have 4 ':'-separated fields, found ${parts.length}`,
    );
  const [, deviceId = '', secretText = '', check = ''] = parts;
  if (!isDeviceId(deviceId)) {
    return fail(
      'EQR_DEVICE_ID',
      `device id must be ${DEVICE_ID_CHARS} base32 characters (A-Z, 2-7), got ${deviceId.length}`,
    );
  }
  const secret = secretText.length === SECRET_CHARS ? base32Decode(secretText) : undefined;
  if (secret?.length !== SECRET_BYTES) {
    return fail(
      'EQR_SECRET',
      `pairing secret must be ${SECRET_CHARS} base32 characters encoding ${SECRET_BYTES} bytes`,
    );
  }
  const body = parts.slice(0, 3).join(':');
  if (check !== checkOf(body))
    return fail(
      'EQR_CHECKSUM',
      'pairing code check characters do not match (mistyped or damaged code)',
    );
  return { deviceId, secret };
});

export type QrParseResult = Result<DeviceIdentity, QrPayloadErrorCode>;

/** Parse a payload; never throws. */
export function parseQrPayload(text: unknown): QrParseResult {
  const r = QrPayloadSchema.safeParse(text);
  if (r.success) return ok(r.data);
  const issue = r.error.issues[0];
  const params =
    issue && 'params' in issue
      ? (issue.params as { code?: QrPayloadErrorCode } | undefined)
      : undefined;
  const code = params?.code ?? 'EQR_FORMAT';
  const message =
    issue?.code === 'invalid_type'
      ? 'pairing code must be a string'
      : (issue?.message ?? 'invalid pairing code');
  return fail(code, message);
}

/** Parse a payload or throw QrPayloadError. */
export function decodeQrPayload(text: string): DeviceIdentity {
  return unwrap(parseQrPayload(text), (code, reason) => new QrPayloadError(code, reason));
}
