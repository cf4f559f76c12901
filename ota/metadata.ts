/**
 * TUF 1.0 metadata: the four top-level roles, their zod schemas, and the
 * signing envelope. Only what Vigil uses is modelled (no delegations, ed25519
 * keys only, targets need a SHA-256: docs/ota.md "Not supported"); unknown
 * fields are kept so signatures over them still verify (and a `delegations`
 * field is ignored: nothing delegated is ever installed).
 *
 * Signatures are always checked over the canonical form of the *raw* parsed
 * `signed` object, never over a re-serialised validated copy.
 */
import { z } from 'zod';

export const SPEC_VERSION = '1.0.31';
export const ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type RoleName = (typeof ROLES)[number];
export const ONLINE_ROLES = ['targets', 'snapshot', 'timestamp'] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];

const HEX = /^[0-9a-f]+$/;
const hex = z.string().regex(HEX, 'must be lower-case hex');
/** TUF's date form: ISO 8601 in UTC, seconds precision. */
const expires = z
  .string()
  .regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'must be YYYY-MM-DDTHH:MM:SSZ');
const version = z.number().int().min(1);
const specVersion = z.string().regex(/^1\.\d+(\.\d+)?$/, 'must be a 1.x TUF spec version');

const ED25519_ONLY = 'only ed25519 keys are supported (docs/ota.md)';
export const KeySchema = z.looseObject({
  keytype: z.literal('ed25519', ED25519_ONLY),
  scheme: z.literal('ed25519', ED25519_ONLY),
  keyval: z.looseObject({ public: hex.length(64) }),
});
export type TufKey = z.infer<typeof KeySchema>;

export const RoleKeysSchema = z.looseObject({
  keyids: z.array(hex.length(64)).min(1),
  threshold: z.number().int().min(1),
});
export type RoleKeys = z.infer<typeof RoleKeysSchema>;

export const HashesSchema = z
  .record(z.string(), hex)
  .refine((h) => Object.keys(h).length > 0, 'at least one hash');

export const MetaFileSchema = z.looseObject({
  version,
  length: z.number().int().min(0).optional(),
  hashes: HashesSchema.optional(),
});
export type MetaFile = z.infer<typeof MetaFileSchema>;

export const RootSchema = z.looseObject({
  _type: z.literal('root'),
  spec_version: specVersion,
  version,
  expires,
  consistent_snapshot: z.boolean(),
  keys: z.record(hex.length(64), KeySchema),
  roles: z.object({
    root: RoleKeysSchema,
    targets: RoleKeysSchema,
    snapshot: RoleKeysSchema,
    timestamp: RoleKeysSchema,
  }),
});
export type Root = z.infer<typeof RootSchema>;

export const TimestampSchema = z.looseObject({
  _type: z.literal('timestamp'),
  spec_version: specVersion,
  version,
  expires,
  meta: z.looseObject({ 'snapshot.json': MetaFileSchema }),
});
export type Timestamp = z.infer<typeof TimestampSchema>;

export const SnapshotSchema = z.looseObject({
  _type: z.literal('snapshot'),
  spec_version: specVersion,
  version,
  expires,
  meta: z.record(z.string(), MetaFileSchema),
});
export type Snapshot = z.infer<typeof SnapshotSchema>;

/** Vigil's custom target fields: what a bundle is and for which channel. */
export const VigilTargetCustomSchema = z.object({
  version: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, 'must be a semantic version'),
  channel: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
  kind: z.enum(['app', 'rootfs']),
});
export type VigilTargetCustom = z.infer<typeof VigilTargetCustomSchema>;

export const TargetFileSchema = z.looseObject({
  length: z.number().int().min(0),
  hashes: HashesSchema,
  custom: z.looseObject({ vigil: VigilTargetCustomSchema.optional() }).optional(),
});
export type TargetFile = z.infer<typeof TargetFileSchema>;

export const TargetsSchema = z.looseObject({
  _type: z.literal('targets'),
  spec_version: specVersion,
  version,
  expires,
  targets: z.record(z.string(), TargetFileSchema),
});
export type Targets = z.infer<typeof TargetsSchema>;

export interface SignedByRole {
  root: Root;
  targets: Targets;
  snapshot: Snapshot;
  timestamp: Timestamp;
}

export const SCHEMAS = {
  root: RootSchema,
  targets: TargetsSchema,
  snapshot: SnapshotSchema,
  timestamp: TimestampSchema,
} as const;

/**
 * `sig` is any string: one that is empty, not hex or simply wrong does not count
 * towards the threshold, but it does not make the metadata malformed (TUF: only a
 * threshold of valid signatures matters).
 */
export const SignatureSchema = z.looseObject({ keyid: hex.length(64), sig: z.string() });
export const EnvelopeSchema = z.looseObject({
  signatures: z.array(SignatureSchema).superRefine((sigs, ctx) => {
    // TUF: the keyids of a signatures list MUST be unique.
    const seen = new Set<string>();
    for (const s of sigs) {
      if (seen.has(s.keyid)) {
        ctx.addIssue({
          code: 'custom',
          message: `key ${s.keyid.slice(0, 16)}… signs more than once (keyids must be unique)`,
        });
        return;
      }
      seen.add(s.keyid);
    }
  }),
  signed: z.looseObject({ _type: z.string() }),
});

/** The first problem zod found, with its path: for one-line error messages. */
export function firstIssue(error: z.ZodError): string {
  const i = error.issues[0];
  if (i === undefined) return 'invalid';
  const path = i.path.map(String).join('.');
  return path === '' ? i.message : `${path}: ${i.message}`;
}
export interface Envelope<T> {
  readonly signatures: readonly { keyid: string; sig: string }[];
  readonly signed: T;
}

/** TUF's expiry form: no milliseconds. */
export function tufDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function addDays(d: Date, days: number): Date {
  return new Date(d.getTime() + days * 86_400_000);
}

/** File name of a role's metadata in a consistent-snapshot repository. */
export function metadataFileName(role: RoleName, v?: number): string {
  return v === undefined ? `${role}.json` : `${String(v)}.${role}.json`;
}
