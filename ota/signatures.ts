/**
 * Signing metadata and counting valid signatures against a role's threshold.
 * Shared by the release side (sign) and the device verifier (count).
 */
import { canonicalBytes } from './canonical-json.js';
import { signBytes, verifyBytes } from './keys.js';
import type { SigningKey } from './keys.js';
import type { Envelope, RoleKeys, TufKey } from './metadata.js';

export function signEnvelope<T>(signed: T, keys: readonly SigningKey[]): Envelope<T> {
  const bytes = canonicalBytes(signed);
  const seen = new Set<string>();
  const signatures: { keyid: string; sig: string }[] = [];
  for (const k of keys) {
    if (seen.has(k.keyid)) continue;
    seen.add(k.keyid);
    signatures.push({ keyid: k.keyid, sig: signBytes(k, bytes) });
  }
  return { signatures, signed };
}

/** Serialised form of a metadata file as published. */
export function encodeEnvelope(env: Envelope<unknown>): string {
  return `${JSON.stringify(env, null, 1)}\n`;
}

/**
 * How many distinct authorised keys of `role` produced a valid signature over
 * the canonical form of `signedRaw`. Each key id counts once (a repeated
 * signature by one key must not reach a threshold of two).
 */
export function countValidSignatures(
  signedRaw: unknown,
  signatures: readonly { keyid: string; sig: string }[],
  keys: Readonly<Record<string, TufKey>>,
  role: RoleKeys,
): number {
  const bytes = canonicalBytes(signedRaw);
  const authorised = new Set(role.keyids);
  const counted = new Set<string>();
  for (const s of signatures) {
    if (!authorised.has(s.keyid) || counted.has(s.keyid)) continue;
    const key = keys[s.keyid];
    if (key === undefined) continue;
    if (verifyBytes(key, bytes, s.sig)) counted.add(s.keyid);
  }
  return counted.size;
}

export function meetsThreshold(
  signedRaw: unknown,
  signatures: readonly { keyid: string; sig: string }[],
  keys: Readonly<Record<string, TufKey>>,
  role: RoleKeys,
): boolean {
  return countValidSignatures(signedRaw, signatures, keys, role) >= role.threshold;
}
