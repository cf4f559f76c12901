/**
 * The phone's end of update reports (protocol/ota-report.ts): decode, keep the
 * recent ones, print them (`vigil app updates`).
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../hw/os/fs.js';
import { unwrap } from '../base/result.js';
import {
  OTA_REPORT_TOPIC,
  OtaReportError,
  OtaReportSchema,
  decodeOtaReport,
  formatOtaReport,
} from '../protocol/ota-report.js';
import type { OtaReport } from '../protocol/ota-report.js';

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
      const r = unwrap(decodeOtaReport(body), (_, reason) => new OtaReportError(reason));
      await this.add(r);
      return formatOtaReport(r);
    };
  }
}

/** The companion's topic handler (registered in app/topics.ts). */
export const OTA_APP_TOPICS = [
  {
    topic: OTA_REPORT_TOPIC,
    handle: (ctx: { dir: string; fs: DurableFs }, body: Uint8Array): Promise<string> =>
      new PhoneOtaReports(ctx.dir, ctx.fs).handler()(body),
  },
] as const;

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
