/**
 * Privacy modes of the uplink (issue #20, docs/relay.md "Privacy modes"): what
 * the relay and the push service may learn about *when* things happen.
 *
 *  - `off` (default): items leave as soon as they are sealed; sizes and times
 *    are visible to the relay.
 *  - `constant-rate`: one fixed-size record per slot whether or not anything
 *    happened, plus one push-sized notice record per notice slot; real items
 *    are split into them, cover records fill the rest. Only live view breaks
 *    the pattern.
 *  - `padding-buckets`: at the next slot of a coarse schedule, what is queued
 *    leaves in records padded to a few sizes; idle slots send nothing.
 *
 * The config section (firmware/config/config.ts `privacy`) is validated here
 * strictly; `privacyCost` is the estimate `vigil hub status` and the docs show.
 */
import { z } from 'zod';
import { STREAM_MAX_RECORD_BYTES } from '../../protocol/stream-record.js';

/** Plaintext size of a notice record: its MLS message stays under the push limit. */
export const NOTICE_RECORD_BYTES = 2048;
/**
 * MLS application-message overhead over the plaintext for this profile: 146 bytes
 * for a notice record, 150 for 16 KiB..2 MiB records (the length varint grows);
 * test/integration/privacy-day.test.ts checks it on real messages.
 */
export const MLS_RECORD_OVERHEAD = 150;

const MAX_KIB = STREAM_MAX_RECORD_BYTES / 1024;

export const privacySchema = z
  .object({
    mode: z.enum(['off', 'constant-rate', 'padding-buckets']).default('off'),
    /**
     * `scheduled`: notices ride the mode's schedule (cover pushes included in
     * constant-rate mode). `immediate`: a notice is pushed at once — the relay and
     * the push service then learn when each event happened (docs/app.md).
     */
    notices: z.enum(['scheduled', 'immediate']).default('scheduled'),
    constantRate: z
      .object({
        /** Plaintext bytes of each record, KiB. */
        recordKiB: z.number().int().min(1).max(MAX_KIB).default(64),
        /** One record every slotSeconds. */
        slotSeconds: z.number().int().min(1).max(3600).default(5),
        /** One notice record (pushed) every noticeSlotSeconds. */
        noticeSlotSeconds: z.number().int().min(5).max(3600).default(60),
      })
      .strict()
      .default({ recordKiB: 64, slotSeconds: 5, noticeSlotSeconds: 60 }),
    buckets: z
      .object({
        /** Queued items leave at the next multiple of slotMinutes. */
        slotMinutes: z.number().int().min(1).max(1440).default(5),
        /** Record sizes, KiB, strictly ascending: a batch is padded to the smallest that fits. */
        sizesKiB: z
          .array(z.number().int().min(1).max(MAX_KIB))
          .min(1)
          .max(8)
          .refine((a) => a.every((v, i) => i === 0 || v > (a[i - 1] ?? 0)), {
            message: 'sizes must be strictly ascending',
          })
          .default([64, 512, 2048]),
      })
      .strict()
      .default({ slotMinutes: 5, sizesKiB: [64, 512, 2048] }),
  })
  .strict();

export type PrivacyConfig = z.infer<typeof privacySchema>;
export const PRIVACY_OFF: PrivacyConfig = privacySchema.parse({});

/** The schedule the uplink runs, in bytes and milliseconds. */
export interface PrivacyPlan {
  readonly mode: 'constant-rate' | 'padding-buckets';
  readonly scheduledNotices: boolean;
  /** Data slot length. */
  readonly slotMs: number;
  /** constant-rate: every record's plaintext size. */
  readonly recordBytes: number;
  /** padding-buckets: the allowed record sizes, ascending. */
  readonly bucketBytes: readonly number[];
  /** constant-rate: notice slot length (padding-buckets: notices leave at the data slot). */
  readonly noticeSlotMs: number;
}

export function planOf(c: PrivacyConfig): PrivacyPlan | undefined {
  switch (c.mode) {
    case 'off':
      return undefined;
    case 'constant-rate':
      return {
        mode: 'constant-rate',
        scheduledNotices: c.notices === 'scheduled',
        slotMs: c.constantRate.slotSeconds * 1000,
        recordBytes: c.constantRate.recordKiB * 1024,
        bucketBytes: [c.constantRate.recordKiB * 1024],
        noticeSlotMs: c.constantRate.noticeSlotSeconds * 1000,
      };
    case 'padding-buckets':
      return {
        mode: 'padding-buckets',
        scheduledNotices: c.notices === 'scheduled',
        slotMs: c.buckets.slotMinutes * 60_000,
        recordBytes: (c.buckets.sizesKiB.at(-1) ?? 64) * 1024,
        bucketBytes: c.buckets.sizesKiB.map((k) => k * 1024),
        noticeSlotMs: c.buckets.slotMinutes * 60_000,
      };
  }
}

/** A day's traffic assumed by the estimate (defaults: a busy front door). */
export interface Workload {
  readonly eventsPerDay: number;
  readonly clipBytes: number;
  readonly thumbnailBytes: number;
}
export const DEFAULT_WORKLOAD: Workload = {
  eventsPerDay: 20,
  clipBytes: 2_500_000, // ~10 s at 2 Mbit/s
  thumbnailBytes: 40_000,
};

export interface PrivacyCost {
  readonly mode: PrivacyConfig['mode'];
  /** Bytes the hub uploads per phone per day (the phone downloads the same). */
  readonly upBytesPerDay: number;
  /** The same with the mode off, for the workload. */
  readonly baselineBytesPerDay: number;
  /** Pushes per phone per day. */
  readonly pushesPerDay: number;
  /** Relay storage a phone that stays away one day leaves behind, bytes. */
  readonly relayBytesPerOfflineDay: number;
  /** Relay items per offline day (the relay's per-device item cap counts these). */
  readonly relayItemsPerOfflineDay: number;
  /** Added delivery delay of a clip (mean and worst), ms, at the workload's clip size. */
  readonly addedLatencyMs: { readonly mean: number; readonly max: number };
  /** Added delay of a notice, ms. */
  readonly noticeLatencyMs: { readonly mean: number; readonly max: number };
}

const DAY_MS = 86_400_000;

function bucketed(bytes: number, buckets: readonly number[]): { bytes: number; records: number } {
  const largest = buckets.at(-1) ?? bytes;
  let left = bytes;
  let out = 0;
  let records = 0;
  while (left > 0) {
    const fit = buckets.find((b) => b >= left) ?? largest;
    out += fit + MLS_RECORD_OVERHEAD;
    left -= fit;
    records++;
  }
  return { bytes: out, records };
}

/** The cost of a mode for one phone (pure: the estimate shown to the user). */
export function privacyCost(c: PrivacyConfig, w: Workload = DEFAULT_WORKLOAD): PrivacyCost {
  const itemBytes = w.clipBytes + w.thumbnailBytes;
  const baseline = w.eventsPerDay * (itemBytes + 2 * 600 + 400); // container + notice overheads
  const noticeMsg = NOTICE_RECORD_BYTES + MLS_RECORD_OVERHEAD;
  const p = planOf(c);
  if (p === undefined)
    return {
      mode: 'off',
      upBytesPerDay: baseline,
      baselineBytesPerDay: baseline,
      pushesPerDay: w.eventsPerDay,
      relayBytesPerOfflineDay: baseline,
      relayItemsPerOfflineDay: 3 * w.eventsPerDay,
      addedLatencyMs: { mean: 0, max: 0 },
      noticeLatencyMs: { mean: 0, max: 0 },
    };
  if (p.mode === 'constant-rate') {
    const slots = DAY_MS / p.slotMs;
    const noticeSlots = p.scheduledNotices ? DAY_MS / p.noticeSlotMs : w.eventsPerDay;
    const up = slots * (p.recordBytes + MLS_RECORD_OVERHEAD) + noticeSlots * noticeMsg;
    const records = Math.ceil(itemBytes / (p.recordBytes - 64));
    return {
      mode: c.mode,
      upBytesPerDay: up,
      baselineBytesPerDay: baseline,
      pushesPerDay: noticeSlots,
      relayBytesPerOfflineDay: up,
      relayItemsPerOfflineDay: slots + noticeSlots,
      // the clip's records follow one another; the first waits half a slot on average
      addedLatencyMs: { mean: (records - 0.5) * p.slotMs, max: records * p.slotMs },
      noticeLatencyMs: p.scheduledNotices
        ? { mean: p.noticeSlotMs / 2, max: p.noticeSlotMs }
        : { mean: 0, max: 0 },
    };
  }
  const perEvent = bucketed(itemBytes + 64, p.bucketBytes);
  const notices = w.eventsPerDay * noticeMsg;
  const up = w.eventsPerDay * perEvent.bytes + notices;
  return {
    mode: c.mode,
    upBytesPerDay: up,
    baselineBytesPerDay: baseline,
    pushesPerDay: w.eventsPerDay,
    relayBytesPerOfflineDay: up,
    relayItemsPerOfflineDay: w.eventsPerDay * (perEvent.records + 1),
    addedLatencyMs: { mean: p.slotMs / 2, max: p.slotMs },
    noticeLatencyMs: p.scheduledNotices
      ? { mean: p.slotMs / 2, max: p.slotMs }
      : { mean: 0, max: 0 },
  };
}

function mib(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(2)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}
function dur(ms: number): string {
  return ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(0)} s`;
}

/** One line for people (`vigil hub status`). */
export function describeCost(k: PrivacyCost): string {
  if (k.mode === 'off') return 'off (the relay sees when events happen)';
  return (
    `${k.mode}: ~${mib(k.upBytesPerDay)}/day per phone up and down ` +
    `(${mib(k.baselineBytesPerDay)} with the mode off at ${DEFAULT_WORKLOAD.eventsPerDay} events/day), ` +
    `${Math.round(k.pushesPerDay)} pushes/day, clips ~${dur(k.addedLatencyMs.mean)} later ` +
    `(at most ${dur(k.addedLatencyMs.max)}), notices ~${dur(k.noticeLatencyMs.mean)} later; ` +
    `a phone away for a day leaves ~${mib(k.relayBytesPerOfflineDay)} on the relay`
  );
}
