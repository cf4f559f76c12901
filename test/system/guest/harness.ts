/**
 * Guest-side scenario harness for `.ts` scenarios (compiled with the project, run by node in
 * the guest). `scenario(body)` runs the body and reports: resolve = pass, throw = fail with
 * the error's message as the reason the host prints. See test/system/README.md.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { VigilError } from '../../../base/errors.js';

export class ScenarioFailure extends VigilError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super('ESCENARIO', reason, options);
    this.name = 'ScenarioFailure';
  }
}

/** End the scenario as failed with this reason. */
export function fail(reason: string, cause?: unknown): never {
  throw new ScenarioFailure(reason, cause === undefined ? undefined : { cause });
}

/** Assert a condition; the reason is what the host reports when it does not hold. */
export function check(condition: boolean, reason: string): asserts condition {
  if (!condition) fail(reason);
}

export function log(text: string): void {
  process.stdout.write(`[vt ${process.uptime().toFixed(2)}] ${text}\n`);
}

/** Print "VT-MARK name" straight to the console (what `@kill-at BOOT name` waits for). */
export function mark(name: string): void {
  try {
    appendFileSync('/dev/console', `VT-MARK ${name}\n`);
  } catch {
    /* not in the guest (a host dry run): stdout below is enough */
  }
  process.stdout.write(`VT-MARK ${name}\n`);
}

/** Print the marker, then wait forever for the host to cut the power. */
export async function cutHere(name: string): Promise<never> {
  mark(name);
  for (;;) await new Promise((resolve) => setTimeout(resolve, 3_600_000));
}

/** Block device of a scenario disk (`scratch` always exists; others via `// @disk NAME SIZE`). */
export function scenarioDisk(name: string): string {
  return `/dev/vt/${name}`;
}

/** Directory whose files come back to the host (last-run/<scenario>/out/). */
export function outDir(): string {
  return process.env.VT_OUT ?? '/tmp';
}

/** This boot's number (1-based) for multi-boot scenarios. */
export function bootNumber(): number {
  return Number(process.env.VT_BOOT ?? '1');
}

/** Run a scenario body and exit with its verdict (open handles do not keep it alive). */
export function scenario(body: () => Promise<void>): void {
  body().then(
    () => {
      log('PASS');
      process.exit(0);
    },
    (err: unknown) => {
      const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? 'failed';
      try {
        writeFileSync(process.env.VT_REASON_FILE ?? '/run/vt-reason', `${reason}\n`);
      } catch {
        /* reported on stdout below */
      }
      process.stdout.write(`FAIL: ${reason}\n`);
      if (err instanceof Error && err.stack !== undefined) process.stdout.write(`${err.stack}\n`);
      process.exit(1);
    },
  );
}
