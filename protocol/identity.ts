/**
 * Per-device identity. The factory makes two random values per unit; everything
 * else a pairing needs is derived from them with HKDF-SHA256, so the QR label,
 * the hub and the phone all compute the same hotspot and MLS parameters and no
 * derived value has to be stored.
 *
 *   device id  : 80 random bits, 16 base32 characters (printed on the label)
 *   secret     : 32 random bytes (only in the QR code and the device's bundle)
 *
 *   ssid           = "Vigil-" + first 6 characters of the device id
 *   wpaPassphrase  = base32(HKDF(secret, "wpa2-passphrase", 20 bytes))  (32 chars, 160 bits)
 *   mlsPsk         = HKDF(secret, "mls-external-psk", 32 bytes)
 *   mlsPskId       = HKDF(secret, "mls-external-psk-id", 16 bytes)
 *
 * HKDF salt is a fixed version label; the info string binds purpose and device
 * id, so two purposes never share key material.
 */
import { hkdfSync } from 'node:crypto';
import { cryptoRandom, type RandomSource } from '../base/random.js';
import { ValidationError } from '../base/errors.js';
import { base32Encode, base32Length } from './base32.js';

export const DEVICE_ID_BYTES = 10;
export const DEVICE_ID_CHARS = base32Length(DEVICE_ID_BYTES); // 16
export const SECRET_BYTES = 32;
export const SSID_PREFIX = 'Vigil-';
export const SHORT_ID_CHARS = 6;
export const WPA_PASSPHRASE_BYTES = 20;
export const MLS_PSK_BYTES = 32;
export const MLS_PSK_ID_BYTES = 16;
const HKDF_SALT = Buffer.from('vigil/pairing/v1', 'utf8');

export { cryptoRandom, type RandomSource } from '../base/random.js';

export interface DeviceIdentity {
  /** 16 upper-case base32 characters, no dashes. */
  readonly deviceId: string;
  /** 32 bytes. Never log, never print. */
  readonly secret: Uint8Array;
}

export interface DerivedIdentity {
  readonly ssid: string;
  readonly wpaPassphrase: string;
  readonly mlsPsk: Uint8Array;
  readonly mlsPskId: Uint8Array;
}

const DEVICE_ID_RE = new RegExp(`^[A-Z2-7]{${DEVICE_ID_CHARS}}$`);

export function isDeviceId(text: string): boolean {
  return DEVICE_ID_RE.test(text);
}

/** Normalise a typed device id ("abcd-efgh ...") to the canonical form, or undefined. */
export function parseDeviceId(text: string): string | undefined {
  const id = text.replace(/[-\s]/g, '').toUpperCase();
  return isDeviceId(id) ? id : undefined;
}

/** "ABCDEFGHIJKLMNOP" -> "ABCD-EFGH-IJKL-MNOP" (what the label prints). */
export function formatDeviceId(deviceId: string): string {
  return deviceId.replace(/(.{4})(?=.)/g, '$1-');
}

export function shortId(deviceId: string): string {
  return deviceId.slice(0, SHORT_ID_CHARS);
}

export function newIdentity(random: RandomSource = cryptoRandom): DeviceIdentity {
  const id = random(DEVICE_ID_BYTES);
  const secret = random(SECRET_BYTES);
  if (id.length !== DEVICE_ID_BYTES || secret.length !== SECRET_BYTES) {
    throw new ValidationError('random source returned the wrong number of bytes');
  }
  return { deviceId: base32Encode(id), secret };
}

function hkdf(secret: Uint8Array, purpose: string, deviceId: string, length: number): Uint8Array {
  const info = Buffer.from(`${purpose}|${deviceId}`, 'utf8');
  return new Uint8Array(hkdfSync('sha256', secret, HKDF_SALT, info, length));
}

/** Derive the hotspot and MLS parameters of a device from its pairing secret. */
export function deriveIdentity(secret: Uint8Array, deviceId: string): DerivedIdentity {
  if (secret.length !== SECRET_BYTES) {
    throw new ValidationError(`pairing secret must be ${SECRET_BYTES} bytes, got ${secret.length}`);
  }
  if (!isDeviceId(deviceId)) {
    throw new ValidationError(`device id must be ${DEVICE_ID_CHARS} base32 characters`);
  }
  return {
    ssid: SSID_PREFIX + shortId(deviceId),
    wpaPassphrase: base32Encode(hkdf(secret, 'wpa2-passphrase', deviceId, WPA_PASSPHRASE_BYTES)),
    mlsPsk: hkdf(secret, 'mls-external-psk', deviceId, MLS_PSK_BYTES),
    mlsPskId: hkdf(secret, 'mls-external-psk-id', deviceId, MLS_PSK_ID_BYTES),
  };
}
