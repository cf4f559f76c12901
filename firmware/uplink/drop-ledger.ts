/**
 * What each phone has not yet been told about items the hub dropped unsent
 * (firmware/uplink/backlog.ts). Every drop is counted for every phone paired at
 * that moment; a phone's count is handed out (and zeroed) when the hub answers
 * its next heartbeat (`heartbeat-ack.dropped`). Kept in the data volume through
 * DurableFs, so a restart between the drop and the heartbeat loses nothing.
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../../hw/os/fs.js';
import type { Logger } from '../../base/logger.js';

export const DROP_LEDGER_FILE = 'uplink-dropped.json';

const LedgerSchema = z.strictObject({
  format: z.literal('vigil-drop-ledger'),
  version: z.literal(1),
  pending: z.record(z.string().min(1).max(128), z.number().int().positive()),
});

export class DropLedger {
  readonly #path: string;
  readonly #fs: DurableFs;
  readonly #log: Logger;
  #pending = new Map<string, number>();

  private constructor(dir: string, fs: DurableFs, log: Logger) {
    this.#path = join(dir, DROP_LEDGER_FILE);
    this.#fs = fs;
    this.#log = log;
  }

  static async open(dir: string, fs: DurableFs, logger: Logger): Promise<DropLedger> {
    const l = new DropLedger(dir, fs, logger.child('drop-ledger'));
    const raw = await fs.readIfExists(l.#path);
    if (raw !== undefined) {
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        json = undefined;
      }
      const r = LedgerSchema.safeParse(json);
      if (r.success) l.#pending = new Map(Object.entries(r.data.pending));
      else l.#log.error('dropped-items ledger unreadable; starting empty', { path: l.#path });
    }
    return l;
  }

  /** Items not yet reported to `phoneId`. */
  pending(phoneId: string): number {
    return this.#pending.get(phoneId) ?? 0;
  }

  /** Count `items` dropped items for each of `phones`. */
  async record(items: number, phones: readonly string[]): Promise<void> {
    if (items <= 0 || phones.length === 0) return;
    for (const p of phones) this.#pending.set(p, this.pending(p) + items);
    await this.#save();
  }

  /** Hand out (and forget) what `phoneId` has not been told. */
  async take(phoneId: string): Promise<number> {
    const n = this.pending(phoneId);
    if (n === 0) return 0;
    this.#pending.delete(phoneId);
    await this.#save();
    return n;
  }

  async #save(): Promise<void> {
    await this.#fs.writeFileAtomic(
      this.#path,
      JSON.stringify({
        format: 'vigil-drop-ledger',
        version: 1,
        pending: Object.fromEntries(this.#pending),
      }) + '\n',
      'drop-ledger',
    );
  }
}
