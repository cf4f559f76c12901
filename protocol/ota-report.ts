/**
 * Update outcomes sent from the hub to the phone over the config group (topic
 * `ota-report`): the wire format, shared by the hub (ota/report.ts) and the
 * companion (app/ota-reports.ts).
 *
 * Wire format (the app message body, JSON, UTF-8):
 *   {"v":1,"at":"<ISO time>","outcome":{"kind":"committed","version":"2.0.0","from":"1.0.0"}}
 * Kinds: committed, rolled-back (to, reason), refused (failure, reason), failed (reason).
 */
import { z } from 'zod';
import { VigilError } from '../base/errors.js';
import { fail, ok, type Result } from '../base/result.js';

export const OTA_REPORT_TOPIC = 'ota-report';

const short = z.string().max(200);
export const OtaReportSchema = z.object({
  v: z.literal(1),
  at: z.string().max(40),
  outcome: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('committed'), version: short, from: short }),
    z.object({
      kind: z.literal('rolled-back'),
      version: short,
      to: short,
      reason: z.string().max(2000),
    }),
    z.object({
      kind: z.literal('refused'),
      version: short,
      failure: short,
      reason: z.string().max(2000),
    }),
    z.object({ kind: z.literal('failed'), version: short, reason: z.string().max(2000) }),
  ]),
});
export type OtaReport = z.infer<typeof OtaReportSchema>;

export class OtaReportError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTAREPORT', message, options);
    this.name = 'OtaReportError';
  }
}

/** `outcome` is the OTA agent's outcome; kinds that are not reported are refused. */
export function encodeOtaReport(
  outcome: { readonly kind: string; readonly [field: string]: unknown },
  at: Date,
): Uint8Array {
  const r = OtaReportSchema.safeParse({ v: 1, at: at.toISOString(), outcome });
  if (!r.success) throw new OtaReportError(`outcome "${outcome.kind}" is not sent to phones`);
  return Buffer.from(JSON.stringify(r.data), 'utf8');
}

export function decodeOtaReport(body: Uint8Array): Result<OtaReport, 'EOTAREPORT'> {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return fail('EOTAREPORT', 'update report is not JSON');
  }
  const r = OtaReportSchema.safeParse(raw);
  if (!r.success)
    return fail('EOTAREPORT', `update report is malformed: ${r.error.issues[0]?.message ?? '?'}`);
  return ok(r.data);
}

/** One line for a person. */
export function formatOtaReport(r: OtaReport): string {
  const o = r.outcome;
  switch (o.kind) {
    case 'committed':
      return `${r.at} update installed: ${o.from} -> ${o.version}`;
    case 'rolled-back':
      return `${r.at} update to ${o.version} rolled back to ${o.to}: ${o.reason}`;
    case 'refused':
      return `${r.at} update refused (${o.failure}), staying on ${o.version}: ${o.reason}`;
    case 'failed':
      return `${r.at} update check failed, staying on ${o.version}: ${o.reason}`;
  }
}
