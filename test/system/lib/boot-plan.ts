/**
 * Run one boot plan (a scenario, possibly over several boots, or a group sharing one boot):
 * make its disks, assemble each boot's initramfs (cached base + this boot's /init, stage 2,
 * helpers, plan), boot, parse "VT-RESULT" lines, bring back the out disk's files.
 */
import { copyFile, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { run } from '../../../hw/os/run.js';
import { bootQemu } from './qemu.js';
import type { BootPlan } from './scenario.js';
import type { BootDisk, GuestImage, Scenario, ScenarioResult } from './types.js';

/** Guest time the kernel, init and stage 2 take before the first scenario (TCG is slow). */
const BOOT_ALLOWANCE_SEC = 180;
const OUT_DISK_MIB = 256;

export interface PlanContext {
  readonly root: string;
  readonly systemDir: string;
  readonly guest: GuestImage;
  readonly projectImage: string;
  /** last-run directory. */
  readonly runDir: string;
  readonly log: (text: string) => void;
}

interface Parsed {
  ok: boolean;
  reason?: string;
  ms: number;
}

const RESULT = /VT-RESULT (\S+) (pass|fail) (\d+) ?(.*)$/;

function relPath(root: string, p: string): string {
  const r = relative(root, p);
  return r.startsWith('..') ? p : r;
}

/** Guest path of a scenario: .sh files ride in the initramfs, .ts ones are compiled to /vigil/dist. */
function guestFile(root: string, s: Scenario): string {
  if (s.kind === 'sh') return `/vt/scenarios/${basename(s.file)}`;
  return `/vigil/dist/${relative(root, s.file).replace(/\.ts$/, '.js')}`;
}

async function buildInitrd(
  ctx: PlanContext,
  plan: BootPlan,
  boot: number,
  dir: string,
): Promise<string> {
  return guestInitrd(ctx, plan.scenarios, boot, plan.boots, dir);
}

/**
 * The initramfs of one boot of the harness's guest that runs `scenarios` through stage 2
 * (also for host scenarios that boot the guest themselves, e.g. with a kernel command line
 * of their own).
 */
export async function guestInitrd(
  ctx: Pick<PlanContext, 'root' | 'systemDir' | 'guest'>,
  scenarios: readonly Scenario[],
  boot: number,
  boots: number,
  dir: string,
): Promise<string> {
  const plan = { scenarios, boots };
  const o = join(dir, `initrd-overlay-${boot}`);
  await rm(o, { recursive: true, force: true });
  await mkdir(join(o, 'vt', 'scenarios'), { recursive: true });
  const g = join(ctx.systemDir, 'guest');
  await copyFile(join(g, 'init'), join(o, 'init'));
  await copyFile(join(g, 'stage2.sh'), join(o, 'vt', 'stage2.sh'));
  await copyFile(join(g, 'lib.sh'), join(o, 'vt', 'lib.sh'));
  const scen = join(ctx.systemDir, 'scenarios');
  for (const f of await readdir(scen)) {
    if (f.endsWith('.sh')) await copyFile(join(scen, f), join(o, 'vt', 'scenarios', f));
  }
  const planLines = plan.scenarios.map(
    (s) =>
      `${s.name} ${s.kind === 'sh' ? 'sh' : 'node'} ${s.header.timeoutSec} ${guestFile(ctx.root, s)}`,
  );
  await writeFile(join(o, 'vt', 'plan'), `${planLines.join('\n')}\n`);
  await writeFile(join(o, 'vt', 'plan.env'), `VT_BOOT=${boot}\nVT_BOOTS=${plan.boots}\n`);
  await run('chmod', ['-R', 'a+rX', o]);
  await run('chmod', ['0755', join(o, 'init')]);
  const files = (await run('find', ['.', '-mindepth', '1'], { cwd: o })).stdout.toString();
  const overlay = (
    await run('cpio', ['-o', '-H', 'newc', '--quiet'], {
      cwd: o,
      stdin: files,
      maxStdoutBytes: 256 * 1024 * 1024,
    })
  ).stdout;
  const initrd = join(dir, `initrd-${boot}.cpio`);
  // the kernel unpacks concatenated cpio archives in order: base (busybox, modules) + overlay
  await writeFile(initrd, Buffer.concat([await readFile(ctx.guest.initrdBase), overlay]));
  await rm(o, { recursive: true, force: true });
  return initrd;
}

export async function runPlan(ctx: PlanContext, plan: BootPlan): Promise<ScenarioResult[]> {
  const dir = join(ctx.runDir, plan.id);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const disks: BootDisk[] = [];
  for (const d of plan.disks) {
    const file = join(dir, `disk-${d.name}.img`);
    await writeFile(file, '');
    await truncate(file, d.sizeMiB * 1024 * 1024);
    disks.push({ file, serial: d.name });
  }
  const results = new Map<string, Parsed>();
  const consoleLogs: string[] = [];
  const started = Date.now();
  for (let boot = 1; boot <= plan.boots; boot++) {
    const initrd = await buildInitrd(ctx, plan, boot, dir);
    const out = join(dir, `out-${boot}.img`);
    await writeFile(out, '');
    await truncate(out, OUT_DISK_MIB * 1024 * 1024);
    const consoleLog = join(dir, `boot-${boot}.console.log`);
    consoleLogs.push(consoleLog);
    const marker = plan.killAt.get(boot);
    const names = plan.scenarios.map((s) => s.name).join(', ');
    ctx.log(
      `boot ${boot}/${plan.boots}: ${names}${marker !== undefined ? ` (power cut at ${marker})` : ''}`,
    );
    const r = await bootQemu({
      kernel: ctx.guest.kernel,
      initrd,
      // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can
      // fail ("IO-APIC + timer doesn't work!" panic) although the timer works
      append: 'console=ttyS0 loglevel=4 panic=-1 no_timer_check random.trust_cpu=on',
      disks: [
        { file: ctx.guest.rootfs, serial: 'root', snapshot: true },
        { file: ctx.projectImage, serial: 'project', readonly: true },
        { file: out, serial: 'out' },
        ...disks,
      ],
      memoryMiB: plan.memoryMiB,
      timeoutMs: (plan.timeoutSec + BOOT_ALLOWANCE_SEC) * 1000,
      consoleLog,
      ...(marker !== undefined ? { killAtLine: `VT-MARK ${marker}` } : {}),
    });
    await rm(initrd, { force: true });
    const seen = new Map<string, Parsed>();
    for (const line of r.lines) {
      const m = RESULT.exec(line);
      if (!m) continue;
      const reason = (m[4] ?? '').trim();
      seen.set(m[1] ?? '', {
        ok: m[2] === 'pass',
        ms: Number(m[3]),
        ...(reason ? { reason } : {}),
      });
    }
    const booted = r.lines.some((l) => l.includes('VT-BOOTED'));
    const panic = r.lines.find((l) => l.includes('Kernel panic'));
    const stopped =
      panic !== undefined ? `kernel panic: ${panic.replace(/^\[[\s\d.]+\]\s*/, '')}` : undefined;
    for (const s of plan.scenarios) {
      if (results.get(s.name)?.ok === false) continue; // first failure wins
      const got = seen.get(s.name);
      let p: Parsed;
      if (marker !== undefined) {
        if (got && !got.ok) p = { ...got, reason: `boot ${boot}: ${got.reason ?? 'failed'}` };
        else if (r.outcome === 'killed') p = { ok: true, ms: r.wallMs };
        else if (got)
          p = { ok: false, ms: got.ms, reason: `boot ${boot} ended before marker "${marker}"` };
        else
          p = {
            ok: false,
            ms: r.wallMs,
            reason: `boot ${boot}: ${stopped ?? (r.outcome === 'timeout' ? 'timed out' : 'guest stopped')} before marker "${marker}"`,
          };
      } else if (got) {
        p =
          got.ok || plan.boots === 1
            ? got
            : { ...got, reason: `boot ${boot}: ${got.reason ?? 'failed'}` };
      } else {
        const why =
          stopped ??
          (!booted
            ? 'guest did not boot'
            : r.outcome === 'timeout'
              ? `guest timed out (${plan.timeoutSec + BOOT_ALLOWANCE_SEC}s) without a result`
              : 'guest stopped without a result (crash or panic?)');
        p = { ok: false, ms: r.wallMs, reason: plan.boots > 1 ? `boot ${boot}: ${why}` : why };
      }
      results.set(s.name, p);
    }
    if (r.outcome !== 'killed') {
      const outDir = join(dir, 'out');
      await mkdir(outDir, { recursive: true });
      await run('tar', ['-C', outDir, '-xf', out], { timeoutMs: 120_000 }).catch(() => undefined);
    }
    await rm(out, { force: true });
    // stop early when every scenario of the plan already failed
    if (plan.scenarios.every((s) => results.get(s.name)?.ok === false)) break;
  }
  for (const d of disks) await rm(d.file, { force: true });
  const total = Date.now() - started;
  return plan.scenarios.map((s) => {
    const p = results.get(s.name) ?? { ok: false, ms: total, reason: 'not run' };
    const log = join(dir, 'out', s.name, `${s.name}.log`);
    return {
      name: s.name,
      ok: p.ok,
      ...(p.reason !== undefined ? { reason: p.reason } : {}),
      ms: plan.scenarios.length === 1 ? total : p.ms,
      consoleLogs: consoleLogs.map((c) => relPath(ctx.root, c)),
      log: relPath(ctx.root, log),
    };
  });
}
