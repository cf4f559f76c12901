/**
 * Push notifications (Web Push: RFC 8030 delivery, RFC 8291 `aes128gcm`
 * payload encryption, RFC 8292 VAPID), shared by the relay (relay/push.ts),
 * the companion (app/push.ts) and the viewer's service worker. Pure: no I/O.
 *
 * What a phone registers with the relay (`PUT /v1/push/endpoints`):
 *
 *   {"endpoint":"https://push.example/abc","keys":{"p256dh":"<b64url 65 B>","auth":"<b64url 16 B>"}}
 *
 * — the fields of a browser's `PushSubscription.toJSON()`, which UnifiedPush
 * distributors hand out too. What the relay pushes (the plaintext that RFC
 * 8291 encrypts for the endpoint's keys; JSON, at most PUSH_MAX_PLAINTEXT bytes,
 * padded with spaces to a multiple of PUSH_PAD_STEP):
 *
 *   {"v":1,"t":"notice","seq":12,"group":"notification","mls":"<b64url MLSMessage>"}
 *       the hub's sealed notice, exactly the bytes of mailbox item `seq`: the
 *       relay copies ciphertext it cannot read; the phone opens it with MLS.
 *   {"v":1,"t":"unseen","deviceId":"…","since":1733480000000,"at":1733481800000}
 *       written by the relay itself when the hub has not been seen since
 *       `since`: NOT authenticated by the hub (the relay is untrusted), so the
 *       phone labels it "relay-reported".
 */
import { ECDH } from 'node:crypto';
import { z } from 'zod';
import { DeviceId } from './relay-api.js';

/**
 * Largest push plaintext. One RFC 8291 record of 4096 bytes holds 3993 bytes
 * (86 header, 16 tag, 1 delimiter); this leaves room, so every body stays
 * under 4 KiB.
 */
export const PUSH_MAX_PLAINTEXT = 3800;
/** Largest endpoint URL the relay keeps. */
export const PUSH_MAX_ENDPOINT = 1024;

const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

function b64urlBytes(name: string, size: number) {
  return z
    .string()
    .max(200)
    .superRefine((s, ctx) => {
      if (!B64URL.test(s)) {
        ctx.addIssue({ code: 'custom', message: `${name} is not base64url` });
        return;
      }
      const n = Buffer.from(s, 'base64url').length;
      if (n !== size)
        ctx.addIssue({ code: 'custom', message: `${name} must be ${size} bytes, got ${n}` });
    });
}

/** A P-256 public key, uncompressed (65 bytes, 0x04 || X || Y), that is a point on the curve. */
export const P256dh = b64urlBytes('p256dh', 65).superRefine((s, ctx) => {
  const b = Buffer.from(s, 'base64url');
  if (b.length !== 65) return;
  try {
    if (b[0] !== 4) throw new Error('not uncompressed');
    ECDH.convertKey(b, 'prime256v1', undefined, undefined, 'uncompressed');
  } catch {
    ctx.addIssue({ code: 'custom', message: 'p256dh is not an uncompressed P-256 point' });
  }
});
export const PushAuth = b64urlBytes('auth', 16);

export const PushRegistrationBody = z.strictObject({
  endpoint: z
    .string()
    .min(1)
    .max(PUSH_MAX_ENDPOINT, `endpoint longer than ${PUSH_MAX_ENDPOINT} characters`),
  keys: z.strictObject({ p256dh: P256dh, auth: PushAuth }),
});
export type PushRegistration = z.infer<typeof PushRegistrationBody>;

export const PushEndpointId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{22}$/, 'endpoint ids are 22 base64url characters');

export const PushEndpointList = z.object({
  endpoints: z.array(z.object({ id: z.string(), origin: z.string(), createdAt: z.number() })),
});
export const PushRegistered = z.object({ id: z.string(), created: z.boolean() });
export const VapidKeyResponse = z.object({ publicKey: z.string() });

const seqNum = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const timeMs = z.number().int().min(0).max(8.64e15);

export const PushNotice = z.strictObject({
  v: z.literal(1),
  t: z.literal('notice'),
  seq: seqNum,
  group: z.string().regex(/^[a-z0-9-]{1,32}$/),
  mls: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .max(PUSH_MAX_PLAINTEXT),
});
export const PushUnseen = z.strictObject({
  v: z.literal(1),
  t: z.literal('unseen'),
  deviceId: DeviceId,
  since: timeMs,
  at: timeMs,
});
export const PushMessage = z.discriminatedUnion('t', [PushNotice, PushUnseen]);
export type PushMessage = z.infer<typeof PushMessage>;
export type PushNotice = z.infer<typeof PushNotice>;
export type PushUnseen = z.infer<typeof PushUnseen>;

export type PushDecode = { ok: true; value: PushMessage } | { ok: false; reason: string };

/** Encode a push plaintext; undefined when it would exceed PUSH_MAX_PLAINTEXT. */
export function encodePushMessage(m: PushMessage): Buffer | undefined {
  const b = Buffer.from(JSON.stringify(PushMessage.parse(m)), 'utf8');
  return b.length <= PUSH_MAX_PLAINTEXT ? b : undefined;
}

/** Push plaintexts are padded to a multiple of this many bytes (`padPushMessage`). */
export const PUSH_PAD_STEP = 256;

/**
 * Pad an encoded push plaintext with trailing spaces (JSON whitespace: the decoder is
 * unchanged) to the next multiple of PUSH_PAD_STEP, at most PUSH_MAX_PLAINTEXT. The push
 * service then sees one size for every notice of one record size, not the length of `seq`
 * in decimal (docs/relay.md "Privacy modes": constant-rate notice records, cover or not).
 */
export function padPushMessage(b: Buffer): Buffer {
  const to = Math.min(PUSH_MAX_PLAINTEXT, Math.ceil(b.length / PUSH_PAD_STEP) * PUSH_PAD_STEP);
  return b.length >= to ? b : Buffer.concat([b, Buffer.alloc(to - b.length, 0x20)]);
}

/** Decode an untrusted push plaintext (what the push service handed the phone). */
export function decodePushMessage(bytes: Uint8Array): PushDecode {
  if (bytes.length > PUSH_MAX_PLAINTEXT)
    return {
      ok: false,
      reason: `push message is ${bytes.length} bytes; the limit is ${PUSH_MAX_PLAINTEXT}`,
    };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return { ok: false, reason: 'push message is not JSON' };
  }
  const r = PushMessage.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const at = i && i.path.length > 0 ? `${i.path.join('.')}: ` : '';
    return { ok: false, reason: `push message: ${at}${i?.message ?? 'invalid'}` };
  }
  return { ok: true, value: r.data };
}
