/**
 * The relay's wire contract: route shapes, query/body schemas and response
 * types, shared by the server (relay/server.ts), the hub's uplink and the
 * companion. Pure: no I/O. docs/relay.md describes every route.
 *
 * Principals authenticate with `Authorization: Bearer <token>` where the token
 * is `d.<deviceId>.<secret>` (a hub) or `p.<phoneId>.<secret>` (a phone). The
 * relay stores only SHA-256 of the secret (secrets are 256-bit random, so a
 * slow hash adds nothing). Routes never name another principal's mailbox: the
 * device whose mailbox is read is always derived from the credential.
 */
import { z } from 'zod';
import { ITEM_KINDS } from './items.js';

export const ID_RE = /^[A-Za-z0-9_-]{4,64}$/;
export const GROUP_RE = /^[a-z0-9-]{1,32}$/;

export const DeviceId = z.string().regex(ID_RE, 'ids are 4-64 characters of A-Z a-z 0-9 _ -');
export const PhoneId = z.string().regex(ID_RE, 'ids are 4-64 characters of A-Z a-z 0-9 _ -');
export const ItemId = z.string().regex(ID_RE, 'item ids are 4-64 characters of A-Z a-z 0-9 _ -');
export const Group = z.string().regex(GROUP_RE, 'groups are 1-32 characters of a-z 0-9 -');
export const ItemKindWire = z.enum([...ITEM_KINDS, 'message']);
export type ItemKindWire = z.infer<typeof ItemKindWire>;

/** Decimal non-negative integer in a query string. */
const uint = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,14})$/, 'expected a non-negative integer')
  .transform(Number);
const flag = z.enum(['0', '1']).transform((v) => v === '1');

/** Long-poll wait in ms (0 = answer at once). The server caps it. */
export const WaitQuery = uint.optional();

export const CreateDeviceBody = z.strictObject({ deviceId: DeviceId });
export const CredentialResponse = z.object({
  principal: z.enum(['device', 'phone']),
  id: z.string(),
  deviceId: DeviceId,
  token: z.string(),
});
export type CredentialResponse = z.infer<typeof CredentialResponse>;

export const RendezvousOfferBody = z.strictObject({
  /** The pairing token both sides learned over the hotspot (>= 128 bits, base64url/hex). */
  token: z.string().min(22).max(128),
  ttlMs: z.number().int().min(1000).max(3_600_000).optional(),
});
export const RendezvousClaimBody = z.strictObject({ token: z.string().min(22).max(128) });

export const AppendQuery = z.strictObject({
  group: Group,
  kind: ItemKindWire,
  offset: uint,
  final: flag.default(false),
  /** Comma-separated phone ids; default: every phone of the device at creation. */
  to: z
    .string()
    .max(2000)
    .optional()
    .transform((s, ctx) => {
      if (s === undefined || s === '') return undefined;
      const ids = s.split(',');
      for (const id of ids)
        if (!ID_RE.test(id)) {
          ctx.addIssue({ code: 'custom', message: `bad phone id in "to": ${id.slice(0, 70)}` });
          return z.NEVER;
        }
      return ids;
    }),
});
export type AppendQuery = z.infer<typeof AppendQuery>;

export const UploadStatus = z.object({
  itemId: z.string(),
  seq: z.number(),
  received: z.number(),
  complete: z.boolean(),
});
export type UploadStatus = z.infer<typeof UploadStatus>;

export const LiveAppendQuery = z.strictObject({
  /** Record index within the live item (0 = header record, never dropped by the hub). */
  index: uint,
  final: flag.default(false),
});

export const AfterQuery = z.strictObject({
  after: uint.optional(),
  wait: WaitQuery,
  group: Group.optional(),
});

export const ReadQuery = z.strictObject({
  offset: uint.optional(),
  wait: WaitQuery,
});

export const LiveReadQuery = z.strictObject({
  after: uint.optional(),
  wait: WaitQuery,
});

export const ItemInfo = z.object({
  seq: z.number(),
  itemId: z.string(),
  group: z.string(),
  kind: ItemKindWire,
  from: z.string(),
  size: z.number(),
  complete: z.boolean(),
  createdAt: z.number(),
});
export type ItemInfo = z.infer<typeof ItemInfo>;

export const ItemList = z.object({ items: z.array(ItemInfo), cursor: z.number() });
export type ItemList = z.infer<typeof ItemList>;

export const PhoneInfo = z.object({ phoneId: z.string(), createdAt: z.number() });
export const PhoneList = z.object({ phones: z.array(PhoneInfo) });

export const LiveInfo = z.object({
  itemId: z.string().nullable(),
  /** Index of the first record still held (records before it were evicted). */
  first: z.number(),
  /** Index after the last record received. */
  next: z.number(),
  complete: z.boolean(),
});
export type LiveInfo = z.infer<typeof LiveInfo>;

export const ErrorBody = z.object({ error: z.string(), message: z.string() });
export type ErrorBody = z.infer<typeof ErrorBody>;

/** Header names used on binary responses. */
export const H = {
  received: 'x-vigil-received',
  complete: 'x-vigil-complete',
  itemId: 'x-vigil-item-id',
  kind: 'x-vigil-kind',
  group: 'x-vigil-group',
  index: 'x-vigil-index',
  final: 'x-vigil-final',
} as const;

export function parseToken(
  raw: string,
): { kind: 'device' | 'phone'; id: string; secret: string } | undefined {
  const m = /^([dp])\.([A-Za-z0-9_-]{4,64})\.([A-Za-z0-9_-]{43,86})$/.exec(raw);
  if (!m) return undefined;
  return { kind: m[1] === 'd' ? 'device' : 'phone', id: m[2] ?? '', secret: m[3] ?? '' };
}
