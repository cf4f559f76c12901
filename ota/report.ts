/**
 * The hub's end of update reports: each OTA outcome is sent to the phones over
 * the config group (wire format: protocol/ota-report.ts).
 */
import { OTA_REPORT_TOPIC, OtaReportError, encodeOtaReport } from '../protocol/ota-report.js';
import type { OtaOutcome, OutcomeReporter } from './agent.js';

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
