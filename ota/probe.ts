/**
 * The real health probe of a freshly installed slot: start the new slot's own
 * program (`node <slot>/dist/bin/vigil.js ota probe`) and require a healthy
 * JSON answer naming the expected version before a deadline. A crash, a bad
 * answer, a wrong version or a hang (killed at the deadline: the watchdog)
 * fails the trial.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { CommandError, run } from '../hw/os/run.js';

export interface ProbeResult {
  readonly ok: boolean;
  readonly reason: string;
}

/** The port: probe the process of a slot. */
export interface TrialProbe {
  probe(
    slotDir: string,
    version: string,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<ProbeResult>;
}

const AnswerSchema = z.object({
  ok: z.boolean(),
  version: z.string(),
  detail: z.string().optional(),
});

/** Entry point of an app bundle, relative to the slot. */
export const APP_ENTRY = 'dist/bin/vigil.js';

export class ProcessTrialProbe implements TrialProbe {
  readonly #node: string;
  readonly #env: Readonly<Record<string, string | undefined>> | undefined;

  constructor(opts: { node?: string; env?: Readonly<Record<string, string | undefined>> } = {}) {
    this.#node = opts.node ?? process.execPath;
    this.#env = opts.env;
  }

  async probe(
    slotDir: string,
    version: string,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<ProbeResult> {
    let stdout: string;
    let exitCode: number;
    try {
      const r = await run(this.#node, [join(slotDir, APP_ENTRY), 'ota', 'probe'], {
        timeoutMs: opts.timeoutMs,
        cwd: slotDir,
        maxStdoutBytes: 64 * 1024,
        // An unhealthy answer comes with exit code 1: read it rather than fail blind.
        okExitCodes: [0, 1],
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(this.#env ? { env: this.#env } : {}),
      });
      stdout = r.stdout.toString('utf8');
      exitCode = r.exitCode;
    } catch (e) {
      if (e instanceof CommandError && (e.failure === 'timeout' || e.failure === 'aborted')) {
        return {
          ok: false,
          reason: `the new version did not answer within ${String(opts.timeoutMs)} ms (hang; watchdog fired)`,
        };
      }
      return { ok: false, reason: `the new version's probe failed: ${(e as Error).message}` };
    }
    const last = stdout.trim().split('\n').pop() ?? '';
    let answer: z.infer<typeof AnswerSchema>;
    try {
      answer = AnswerSchema.parse(JSON.parse(last));
    } catch {
      return {
        ok: false,
        reason: `the new version gave no valid health answer (exit code ${String(exitCode)})`,
      };
    }
    if (!answer.ok)
      return {
        ok: false,
        reason: `the new version reports unhealthy: ${answer.detail ?? 'no detail'}`,
      };
    if (answer.version !== version)
      return { ok: false, reason: `the new slot runs ${answer.version}, expected ${version}` };
    return { ok: true, reason: 'probe answered healthy' };
  }
}
