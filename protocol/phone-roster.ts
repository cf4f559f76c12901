/**
 * The phone roster: `app` topics of the config group (sealed by MLS) by which
 * a phone asks its hub which phones are paired. Each phone shares its groups
 * with the hub only, so the hub is the one that knows them all.
 *
 *   phone -> hub  phones-request  {"v":1}
 *   hub -> phone  phones          {"v":1,"phones":[{"phoneId":"<hex>","admin":true,"pairedAt":1733480000000}]}
 *
 * Decoders return a coded result; the message names the offending field.
 */
import { z } from 'zod';
import { ValidationError } from '../base/errors.js';

export const PHONES_REQUEST_TOPIC = 'phones-request';
export const PHONES_TOPIC = 'phones';
/** A hub has a handful of phones; more than this in one answer is refused. */
export const MAX_ROSTER = 64;

export const PhonesRequest = z.strictObject({ v: z.literal(1) });
export const PhoneRoster = z.strictObject({
  v: z.literal(1),
  phones: z
    .array(
      z.strictObject({
        phoneId: z.string().regex(/^[0-9a-f]{2,64}$/),
        admin: z.boolean(),
        pairedAt: z.number().int().min(0),
      }),
    )
    .max(MAX_ROSTER),
});
export type PhoneRoster = z.infer<typeof PhoneRoster>;

export function encodeRoster(r: PhoneRoster): Uint8Array {
  return Buffer.from(JSON.stringify(PhoneRoster.parse(r)), 'utf8');
}

export function decodeRoster(
  bytes: Uint8Array,
): { ok: true; value: PhoneRoster } | { ok: false; error: ValidationError } {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    return { ok: false, error: new ValidationError('phones: body is not JSON', { cause: e }) };
  }
  const r = PhoneRoster.safeParse(raw);
  if (r.success) return { ok: true, value: r.data };
  const i = r.error.issues[0];
  return {
    ok: false,
    error: new ValidationError(
      `phones: ${i && i.path.length > 0 ? i.path.join('.') : 'body'}: ${i?.message ?? 'invalid'}`,
    ),
  };
}

export const PHONES_REQUEST_BODY: Uint8Array = Buffer.from(JSON.stringify({ v: 1 }), 'utf8');
