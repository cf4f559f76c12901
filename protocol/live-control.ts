/**
 * Live view on request and hub liveness: `app` topics of the config group
 * (sealed by MLS; the relay sees only ciphertext). Shared by the hub
 * (firmware/media/live-control.ts, firmware/mls/liveness.ts) and the companion
 * (app/hub-link.ts).
 *
 *   phone -> hub  live-request  {"v":1,"maxSeconds":60}   start, or renew a running session
 *   phone -> hub  live-stop     {"v":1}
 *   hub -> phone  live-started  {"v":1,"itemId":"<hex>","maxSeconds":60}
 *   hub -> phone  live-refused  {"v":1,"reason":"camera-down","detail":"..."}
 *   hub -> phone  hub-alive     {"v":1,"at":1733480000000,"intervalSeconds":3600}
 *   hub -> phone  hub-health    {"v":1,"at":...,"condition":"camera-failed","detail":"..."}
 *
 * Bodies are JSON (UTF-8), at most MAX_CONTROL_BODY bytes. Decoders return a
 * coded result; the error message names the topic and the offending field.
 */
import { z } from 'zod';
import { ValidationError } from '../base/errors.js';

export const LIVE_REQUEST_TOPIC = 'live-request';
export const LIVE_STOP_TOPIC = 'live-stop';
export const LIVE_STARTED_TOPIC = 'live-started';
export const LIVE_REFUSED_TOPIC = 'live-refused';
export const HUB_ALIVE_TOPIC = 'hub-alive';
export const HUB_HEALTH_TOPIC = 'hub-health';

/** Every body here is small: a larger one is refused before parsing. */
export const MAX_CONTROL_BODY = 1024;
/** A live session lasts at most this long per request (the phone renews it). */
export const MAX_LIVE_SECONDS = 3600;

export const LIVE_REFUSAL_REASONS = [
  'camera-down',
  'storage-locked',
  'busy',
  'no-video-yet',
  'error',
] as const;
export type LiveRefusalReason = (typeof LIVE_REFUSAL_REASONS)[number];

export const HEALTH_CONDITIONS = [
  'camera-failed',
  'storage-locked',
  'encoder-software',
  'load-degraded',
  'recovered',
] as const;
export type HealthCondition = (typeof HEALTH_CONDITIONS)[number];

const detail = z.string().max(300);
const schemas = {
  [LIVE_REQUEST_TOPIC]: z.strictObject({
    v: z.literal(1),
    maxSeconds: z.number().int().min(1).max(MAX_LIVE_SECONDS),
  }),
  [LIVE_STOP_TOPIC]: z.strictObject({ v: z.literal(1) }),
  [LIVE_STARTED_TOPIC]: z.strictObject({
    v: z.literal(1),
    itemId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    maxSeconds: z.number().int().min(1).max(MAX_LIVE_SECONDS),
  }),
  [LIVE_REFUSED_TOPIC]: z.strictObject({
    v: z.literal(1),
    reason: z.enum(LIVE_REFUSAL_REASONS),
    detail: detail.optional(),
  }),
  [HUB_ALIVE_TOPIC]: z.strictObject({
    v: z.literal(1),
    at: z.number().int().min(0),
    intervalSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 3600),
  }),
  [HUB_HEALTH_TOPIC]: z.strictObject({
    v: z.literal(1),
    at: z.number().int().min(0),
    condition: z.enum(HEALTH_CONDITIONS),
    detail: detail.optional(),
  }),
} as const;

export type ControlTopic = keyof typeof schemas;
export type ControlBody<T extends ControlTopic> = z.output<(typeof schemas)[T]>;
export type LiveRequest = ControlBody<typeof LIVE_REQUEST_TOPIC>;
export type LiveStarted = ControlBody<typeof LIVE_STARTED_TOPIC>;
export type LiveRefused = ControlBody<typeof LIVE_REFUSED_TOPIC>;
export type HubAlive = ControlBody<typeof HUB_ALIVE_TOPIC>;
export type HubHealth = ControlBody<typeof HUB_HEALTH_TOPIC>;

export type ControlResult<T> = { ok: true; value: T } | { ok: false; error: ValidationError };

function issueText(e: z.ZodError): string {
  const i = e.issues[0];
  if (!i) return 'invalid';
  const at = i.path.length > 0 ? i.path.join('.') : 'body';
  return `${at}: ${i.message}`;
}

/** Encode a body for `topic`; a value outside the format throws (a bug in the sender). */
export function encodeControl<T extends ControlTopic>(topic: T, body: ControlBody<T>): Uint8Array {
  const r = schemas[topic].safeParse(body);
  if (!r.success) throw new ValidationError(`${topic}: ${issueText(r.error)}`);
  return Buffer.from(JSON.stringify(r.data), 'utf8');
}

/** Decode an untrusted body for `topic`. */
export function decodeControl<T extends ControlTopic>(
  topic: T,
  bytes: Uint8Array,
): ControlResult<ControlBody<T>> {
  if (bytes.length > MAX_CONTROL_BODY)
    return {
      ok: false,
      error: new ValidationError(
        `${topic}: body is ${bytes.length} bytes; the limit is ${MAX_CONTROL_BODY}`,
      ),
    };
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    return { ok: false, error: new ValidationError(`${topic}: body is not JSON`, { cause: e }) };
  }
  const r = schemas[topic].safeParse(raw);
  if (!r.success)
    return { ok: false, error: new ValidationError(`${topic}: ${issueText(r.error)}`) };
  return { ok: true, value: r.data as ControlBody<T> };
}

/** One line for a person. */
export function describeRefusal(r: LiveRefused): string {
  const why: Record<LiveRefusalReason, string> = {
    'camera-down': 'the camera is not working',
    'storage-locked': "the hub's storage is locked",
    busy: 'the hub is busy (try again in a moment)',
    'no-video-yet': 'the camera has not produced video yet (try again in a moment)',
    error: 'the hub could not start live view',
  };
  return `live view refused: ${why[r.reason]}${r.detail !== undefined ? ` (${r.detail})` : ''}`;
}

export function describeHealth(h: HubHealth): string {
  const what: Record<HealthCondition, string> = {
    'camera-failed': 'camera failed',
    'storage-locked': 'storage locked',
    'encoder-software': 'hardware encoder unavailable; encoding in software',
    'load-degraded': 'hub overloaded or hot; motion analysis reduced',
    recovered: 'recovered',
  };
  return `hub: ${what[h.condition]}${h.detail !== undefined ? ` (${h.detail})` : ''}`;
}
