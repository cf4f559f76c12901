/**
 * The launcher: what systemd's ExecStart runs (`node /opt/vigil/dist/ota/launch.js hub ...`).
 * It decides which application tree this start of the hub runs, then loads that
 * tree's `dist/bin/vigil.js` IN THIS PROCESS (same PID: sd_notify READY/WATCHDOG
 * and systemd's main-PID tracking keep working, no second Node process).
 *
 *   - a restart trial `pending` in the slot pointer, its slot complete: mark it
 *     `launched` (durably, BEFORE it runs) and run the trial slot with
 *     VIGIL_OTA_TRIAL=<version>: the new hub checks its own health and commits;
 *   - anything else (no trial, or a trial already `launched`/`failed`: it crashed,
 *     hung and was killed by the watchdog, failed its health check, or lost power):
 *     run the committed slot (the agent there reports the rollback);
 *   - the committed slot holds no complete install (factory state): run the base
 *     tree the image installed (where this launcher lives).
 *
 * One-shot like the Pi's tryboot flag: a trial gets exactly one start, so every
 * way out of it (exit, crash, watchdog kill, power cut) lands on the committed slot.
 * The launcher is deliberately small and only changes with the base image.
 */
import { pathExists } from '../hw/os/fs.js';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { reasonOf } from '../base/errors.js';
import { APP_ENTRY } from './probe.js';
import type { HostAppSlots, SlotName } from './slots.js';

export interface LaunchPlan {
  /** The tree to run. */
  readonly dir: string;
  readonly slot: SlotName | 'base';
  /** Installed version of that tree (undefined for the base tree). */
  readonly version: string | undefined;
  /** Set when this start is the one trial start of a new version. */
  readonly trial: boolean;
  readonly why: string;
}

/** Env names the launcher sets for the hub it starts. */
export const ENV_TRIAL = 'VIGIL_OTA_TRIAL';
export const ENV_SLOT = 'VIGIL_OTA_SLOT';

/** Decide what this start runs (and mark a pending trial launched). */
export async function planLaunch(slots: HostAppSlots, baseDir: string): Promise<LaunchPlan> {
  const { pointer, markers } = await slots.status();
  const trial = pointer.trial;
  if (trial?.stage === 'pending') {
    const m = markers[trial.slot];
    const dir = slots.dirOf(trial.slot);
    if (m?.version === trial.version && (await pathExists(join(dir, APP_ENTRY)))) {
      await slots.markLaunched();
      return {
        dir,
        slot: trial.slot,
        version: trial.version,
        trial: true,
        why: `trial of ${trial.version} (its one start)`,
      };
    }
  }
  const committed = pointer.committed;
  const m = markers[committed];
  const dir = slots.dirOf(committed);
  const note =
    trial === undefined
      ? ''
      : ` (trial of ${trial.version} ${trial.stage === 'failed' ? 'failed' : 'did not commit'})`;
  if (m !== undefined && (await pathExists(join(dir, APP_ENTRY))))
    return { dir, slot: committed, version: m.version, trial: false, why: `committed${note}` };
  return { dir: baseDir, slot: 'base', version: undefined, trial: false, why: `base tree${note}` };
}

export interface LaunchOptions {
  readonly slots: HostAppSlots;
  readonly baseDir: string;
  /** Arguments for the chosen tree's `vigil` (e.g. ["hub", "--config", ...]). */
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly log: (line: string) => void;
}

/** Plan, then run the chosen tree's entry in this process; resolves once it is loaded. */
export async function launch(o: LaunchOptions): Promise<LaunchPlan> {
  let plan: LaunchPlan;
  try {
    // Before the hub starts: no writer of the slot pointer is alive yet.
    await o.slots.cleanLeftovers();
    plan = await planLaunch(o.slots, o.baseDir);
  } catch (e) {
    // An unreadable pointer must not stop the camera: the base tree always runs.
    plan = {
      dir: o.baseDir,
      slot: 'base',
      version: undefined,
      trial: false,
      why: `slot state unusable (${reasonOf(e)}): base tree`,
    };
  }
  o.log(
    JSON.stringify({
      ns: 'vigil.launch',
      msg: 'starting',
      slot: plan.slot,
      version: plan.version ?? null,
      trial: plan.trial,
      why: plan.why,
    }),
  );
  o.env[ENV_SLOT] = plan.slot;
  // Only the one trial start carries the trial mark (an inherited one is cleared).
  o.env[ENV_TRIAL] = plan.trial && plan.version !== undefined ? plan.version : '';
  const entry = join(plan.dir, APP_ENTRY);
  process.argv = [process.argv[0] ?? process.execPath, entry, ...o.args];
  await import(pathToFileURL(entry).href);
  return plan;
}
