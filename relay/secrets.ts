/** Hashing and random secrets for relay accounts and pairing tokens. */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export function sha256(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

/** A 256-bit random secret, base64url. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison of two hex SHA-256 digests. */
export function sameHash(a: string, b: string): boolean {
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}
