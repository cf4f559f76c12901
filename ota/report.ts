/**
 * Update outcomes to the phone over the config group (topic `ota-report`), and
 * the phone's end: decode, keep the recent ones, print them.
 *
 * Wire format (the app message body, JSON, UTF-8):
 *   {"v":1,"at":"<ISO time>","outcome":{"kind":"committed","version":"2.0.0","from":"1.0.0"}}
 * Kinds: committed, rolled-back (to, reason), refused (failure, reason), failed (reason).
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../hw/os/fs.js';
import { VigilError } from '../protocol/errors.js';
import type { AppTopic } from '../app/topics.js';
import type { OtaOutcome, OutcomeReporter } from './agent.js';

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

export function encodeOtaReport(outcome: OtaOutcome, at: Date): Uint8Array {
  const r = OtaReportSchema.safeParse({ v: 1, at: at.toISOString(), outcome });
  if (!r.success) throw new OtaReportError(`outcome "${outcome.kind}" is not sent to phones`);
  return Buffer.from(JSON.stringify(r.data), 'utf8');
}

export function decodeOtaReport(body: Uint8Array): OtaReport {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (e) {
    throw new OtaReportError('update report is not JSON', { cause: e });
  }
  const r = OtaReportSchema.safeParse(raw);
  if (!r.success)
    throw new OtaReportError(`update report is malformed: ${r.error.issues[0]?.message ?? '?'}`);
  return r.data;
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

/** The sending side of the port the lead's config channel offers. */
export interface AppSender {
  sendApp(topic: string, body: Uint8Array, phoneId?: string): Promise<void>;
}

/**
 * OutcomeReporter over the config channel. The channel exists only while the
 * hub runs its services (paired, unlocked): without it the report fails and
 * the agent keeps the outcome for the next attempt.
 */
export class ConfigChannelReporter implements OutcomeReporter {
  readonly #channel: () => AppSender | undefined;
  readonly #now: () => Date;

  readonly #timeoutMs: number;

  constructor(
    channel: () => AppSender | undefined,
    opts: { now?: () => Date; timeoutMs?: number } = {},
  ) {
    this.#channel = channel;
    this.#now = opts.now ?? (() => new Date());
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
  }

  async report(outcome: OtaOutcome): Promise<void> {
    if (outcome.kind === 'up-to-date' || outcome.kind === 'restarting') return;
    const ch = this.#channel();
    if (ch === undefined) throw new OtaReportError('no config channel to the phone yet');
    // The channel retries while the relay is down; the agent must not wait for that
    // (the outcome stays pending and is sent again; the phone ignores duplicates).
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ch.sendApp(OTA_REPORT_TOPIC, encodeOtaReport(outcome, this.#now())),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new OtaReportError('the relay did not take the report in time'));
          }, this.#timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

const StoreSchema = z.object({ v: z.literal(1), reports: z.array(OtaReportSchema).max(50) });

/** The phone's copy: the last 20 reports, newest last (<appDir>/ota-reports.json). */
export class PhoneOtaReports {
  static readonly KEEP = 20;
  readonly #path: string;
  readonly #fs: DurableFs;

  constructor(appDir: string, fs: DurableFs) {
    this.#path = join(appDir, 'ota-reports.json');
    this.#fs = fs;
  }

  async list(): Promise<OtaReport[]> {
    const b = await this.#fs.readIfExists(this.#path);
    if (b === undefined) return [];
    try {
      return StoreSchema.parse(JSON.parse(b.toString('utf8'))).reports;
    } catch (e) {
      throw new OtaReportError(`${this.#path} is unreadable`, { cause: e });
    }
  }

  /** Keep a report (a re-sent duplicate is ignored); false when it was a duplicate. */
  async add(r: OtaReport): Promise<boolean> {
    const have = await this.list();
    const same = JSON.stringify(r);
    if (have.some((x) => JSON.stringify(x) === same)) return false;
    const reports = [...have, r].slice(-PhoneOtaReports.KEEP);
    await this.#fs.writeFileAtomic(
      this.#path,
      `${JSON.stringify({ v: 1, reports })}\n`,
      'phone-ota-reports',
    );
    return true;
  }

  /** The handler for E2eeCrypto.onApp(OTA_REPORT_TOPIC, ...): store, return the line. */
  handler(): (body: Uint8Array) => Promise<string> {
    return async (body) => {
      const r = decodeOtaReport(body);
      await this.add(r);
      return formatOtaReport(r);
    };
  }
}

/** The companion's topic handler (registered in app/topics.ts). */
export const OTA_APP_TOPICS: readonly AppTopic[] = [
  {
    topic: OTA_REPORT_TOPIC,
    handle: (ctx, body) => new PhoneOtaReports(ctx.dir, ctx.fs).handler()(body),
  },
];

/**
 * `vigil app updates`: fetch what the hub sent (the topic handler stores the
 * reports), then print the recent ones, newest last.
 */
export async function showUpdates(
  io: { dir: string; fs: DurableFs; out: (t: string) => void },
  opts: { json: boolean },
  sync: () => Promise<void>,
): Promise<number> {
  await sync();
  const reports = await new PhoneOtaReports(io.dir, io.fs).list();
  if (opts.json) {
    io.out(`${JSON.stringify({ reports })}\n`);
    return 0;
  }
  if (reports.length === 0) io.out('no update reports from the hub yet\n');
  for (const r of reports.slice(-10)) io.out(`${formatOtaReport(r)}\n`);
  return 0;
}
