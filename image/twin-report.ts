/**
 * qemu-amd64 twin only (vigil-twin-report.service, when the kernel command
 * line says vigil.report=1): wait for the hub to reach the pairing state and
 * for hostapd to bring up an access point on a hwsim radio, then print the
 * facts as `VIGIL-TWIN key=value` console lines for the system test.
 */
import { readdir, readFile } from 'node:fs/promises';
import { pathExists } from '../hw/os/fs.js';
import { join } from 'node:path';
import { z } from 'zod';
import { HostPaths } from '../hw/os/host-paths.js';
import { run } from '../hw/os/run.js';
import type { Runner } from './disk.js';
import { BUNDLE_FILE } from '../protocol/provisioning-bundle.js';
import { DATA_VOLUME_NAME } from '../protocol/data-volume.js';
import { grownSize } from './grow.js';
import { IMAGE_PATHS } from './overlay.js';

const Status = z.looseObject({ state: z.string() });

export interface TwinReportOptions {
  readonly print: (line: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly runner?: Runner;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly settleMs?: number;
  /** Bound on `vigil doctor --json` (node under TCG starts slowly). Default 300 s. */
  readonly doctorTimeoutMs?: number;
}

/**
 * `vigil doctor --json` on the twin, as one `VIGIL-DOCTOR <report>` console line (the
 * `vigil-doctor/1` JSON, compact), or `VIGIL-DOCTOR error=<why>` when it gave no report.
 * Exit code 1 (a failed check, e.g. no relay reachable before pairing) still has a report.
 */
async function doctorLine(runner: Runner, timeoutMs: number): Promise<string> {
  try {
    const r = await runner(IMAGE_PATHS.cli, ['doctor', '--json', '--timeout', '30'], {
      timeoutMs,
      okExitCodes: [0, 1],
    });
    const report: unknown = JSON.parse(r.stdout.toString('utf8'));
    return `VIGIL-DOCTOR ${JSON.stringify(report)}`;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return `VIGIL-DOCTOR error=${why.split('\n')[0] ?? ''}`;
  }
}

/** Interfaces in AP mode per `iw dev`. */
export function apInterfaces(iwDev: string): string[] {
  const out: string[] = [];
  let iface: string | undefined;
  for (const line of iwDev.split('\n')) {
    const i = /^\s*Interface (\S+)/.exec(line);
    if (i) iface = i[1];
    if (/^\s*type AP\s*$/.test(line) && iface !== undefined) out.push(iface);
  }
  return out;
}

async function processRunning(paths: HostPaths, name: string): Promise<boolean> {
  for (const pid of await readdir(paths.host('/proc')).catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const comm = await readFile(paths.host(`/proc/${pid}/comm`), 'utf8').catch(() => '');
    if (comm.trim() === name) return true;
  }
  return false;
}

export async function twinReport(o: TwinReportOptions): Promise<number> {
  const runner = o.runner ?? run;
  const paths = HostPaths.fromEnv(o.env);
  const deadline = Date.now() + (o.timeoutMs ?? 1_200_000);
  const poll = o.pollMs ?? 1000;
  // once the hub reports a state, give it this long to reach pairing with the hotspot up
  // (at load average ~8 the emulated twin took 80 s from "locked" to the hotspot; CI's
  // loaded machines are slower still)
  const settleMs = o.settleMs ?? 600_000;
  let firstStatusAt: number | undefined;
  let state = 'none';
  let aps: string[];
  let hostapd: boolean;
  for (;;) {
    try {
      const s = Status.safeParse(JSON.parse(await readFile(paths.runDir + '/status.json', 'utf8')));
      if (s.success) state = s.data.state;
    } catch {
      /* hub not up yet */
    }
    hostapd = await processRunning(paths, 'hostapd');
    try {
      aps = apInterfaces(
        (await runner('iw', ['dev'], { timeoutMs: 10_000 })).stdout.toString('utf8'),
      );
    } catch {
      aps = [];
    }
    if (state !== 'none' && firstStatusAt === undefined) firstStatusAt = Date.now();
    const settled = firstStatusAt !== undefined && Date.now() - firstStatusAt > settleMs;
    if ((state === 'pairing' && hostapd && aps.length > 0) || settled || Date.now() > deadline)
      break;
    await new Promise((r) => setTimeout(r, poll));
  }
  const machineId = (await readFile(paths.host('/etc/machine-id'), 'utf8').catch(() => '')).trim();
  o.print(`VIGIL-TWIN state=${state}`);
  o.print(`VIGIL-TWIN hostapd=${hostapd ? 'running' : 'absent'} ap=${aps.join(',') || 'none'}`);
  o.print(`VIGIL-TWIN machine-id=${/^[0-9a-f]{32}$/.test(machineId) ? 'generated' : 'missing'}`);
  o.print(`VIGIL-TWIN data-grown=${String((await grownSize(paths)) ?? 'no')}`);
  // the hub formatted/unlocked LUKS on the data partition (its mount lives in the hub unit's
  // own mount namespace, the dm mapping is global) and moved the plaintext bundle into it
  const volume = await pathExists(paths.host(`/dev/mapper/${DATA_VOLUME_NAME}`));
  const plaintext = await pathExists(join(paths.provisioningDir, BUNDLE_FILE));
  o.print(
    `VIGIL-TWIN data-volume=${volume ? 'open' : 'closed'} bundle-plaintext=${plaintext ? 'present' : 'gone'}`,
  );
  // what the device found and chose (camera, encoder path, LUKS, AP mode): before the verdict
  // line, at which the system test stops the twin
  o.print(await doctorLine(runner, o.doctorTimeoutMs ?? 300_000));
  const ok = state === 'pairing' && hostapd && aps.length > 0;
  o.print(`VIGIL-TWIN result=${ok ? 'ok' : 'fail'}`);
  return ok ? 0 : 1;
}
