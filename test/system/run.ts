/**
 * `npm run test:system`: build (or reuse) the guest, stage the project, run every scenario
 * in qemu and print TAP: one `system` subtest with one test point per scenario.
 * Options: --only TEXT (repeatable; also VIGIL_SYSTEM_ONLY=a,b), --list, --rebuild.
 * Contract for scenarios: test/system/README.md.
 */
import { lstat, mkdir, readdir, rename, rm, stat, symlink } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { guestInitrd, runPlan } from './lib/boot-plan.js';
import { ensureGuest } from './lib/guest-build.js';
import { runLanes, type LaneJob } from './lib/lanes.js';
import { stageProject } from './lib/project.js';
import { bootQemu } from './lib/qemu.js';
import { discover, filterScenarios, planBoots } from './lib/scenario.js';
import type { GuestImage, HostScenario, Scenario, ScenarioResult } from './lib/types.js';

const SYSTEM_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(SYSTEM_DIR, '..', '..');
const CACHE = join(SYSTEM_DIR, '.cache');
const KEEP_RUNS = 4;

interface Options {
  only: string[];
  list: boolean;
  rebuild: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const opts: Options = { only: [], list: false, rebuild: false };
  const env = process.env.VIGIL_SYSTEM_ONLY;
  if (env)
    opts.only.push(
      ...env
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') {
      const v = argv[++i];
      if (v === undefined) throw new Error('--only needs a value');
      opts.only.push(v);
    } else if (a?.startsWith('--only=')) opts.only.push(a.slice(7));
    else if (a === '--list') opts.list = true;
    else if (a === '--rebuild') opts.rebuild = true;
    else throw new Error(`unknown option ${String(a)} (--only TEXT, --list, --rebuild)`);
  }
  return opts;
}

const say = (text: string): void => {
  process.stderr.write(`[system] ${text}\n`);
};
const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const yamlString = (s: string): string => JSON.stringify(s);

let pointNo = 0;
let failures = 0;
function report(r: ScenarioResult): void {
  pointNo++;
  const secs = (r.ms / 1000).toFixed(1);
  if (r.ok && r.skip !== undefined) {
    out(`    ok ${pointNo} - ${r.name} # SKIP ${r.skip.replace(/\n/g, ' ')}`);
    say(`SKIP ${r.name}: ${r.skip}`);
    return;
  }
  if (r.ok) {
    out(`    ok ${pointNo} - ${r.name} # time=${secs}s`);
    say(`PASS ${r.name} (${secs}s)`);
    return;
  }
  failures++;
  out(`    not ok ${pointNo} - ${r.name} # time=${secs}s`);
  out('      ---');
  out(`      reason: ${yamlString(r.reason ?? 'failed')}`);
  for (const c of r.consoleLogs) out(`      console: ${yamlString(c)}`);
  if (r.log !== undefined) out(`      log: ${yamlString(r.log)}`);
  out('      ...');
  say(`FAIL ${r.name}: ${r.reason ?? 'failed'} (console: ${r.consoleLogs.join(', ')})`);
}

async function runHostScenario(
  s: Scenario,
  guest: GuestImage | undefined,
  runDir: string,
  projectImage: string | undefined,
): Promise<ScenarioResult> {
  const workDir = join(runDir, s.name);
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  const consoleLogs: string[] = [];
  const t0 = Date.now();
  const timeout = new Promise<never>((_, reject) => {
    setTimeout(() => {
      reject(new Error(`timed out after ${s.header.timeoutSec}s`));
    }, s.header.timeoutSec * 1000).unref();
  });
  try {
    const mod = (await import(pathToFileURL(s.file).href)) as { default?: HostScenario };
    if (typeof mod.default !== 'function')
      throw new Error('no default export (a HostScenario function)');
    const body = mod.default({
      ...(guest !== undefined ? { guest } : {}),
      workDir,
      ...(guest !== undefined && projectImage !== undefined
        ? {
            stage2: {
              projectImage,
              initrd: (script: string, timeoutSec: number, boot: number, boots: number) => {
                const file = join(SYSTEM_DIR, 'scenarios', script);
                const helper: Scenario = {
                  name: s.name,
                  kind: script.endsWith('.sh') ? 'sh' : 'ts',
                  file,
                  header: { ...s.header, timeoutSec },
                };
                return guestInitrd(
                  { root: ROOT, systemDir: SYSTEM_DIR, guest },
                  [helper],
                  boot,
                  boots,
                  workDir,
                );
              },
            },
          }
        : {}),
      boot: async (spec) => {
        consoleLogs.push(relative(ROOT, spec.consoleLog));
        return bootQemu(spec);
      },
      log: (text) => {
        say(`${s.name}: ${text}`);
      },
    });
    const res = await Promise.race([body, timeout]);
    if (res !== undefined && 'skip' in res)
      return { name: s.name, ok: true, skip: res.skip, ms: Date.now() - t0, consoleLogs };
    return { name: s.name, ok: true, ms: Date.now() - t0, consoleLogs };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return { name: s.name, ok: false, reason, ms: Date.now() - t0, consoleLogs };
  }
}

/**
 * A directory per run (several sessions may run the suite at once), `.cache/last-run` points
 * at the newest. Old runs are pruned: keep the newest few, never one younger than an hour.
 */
async function newRunDir(): Promise<string> {
  const runs = join(CACHE, 'runs');
  await mkdir(runs, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(runs, `${stamp}-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const tmpLink = join(CACHE, `.last-run-${process.pid}`);
  await rm(tmpLink, { force: true });
  await symlink(relative(CACHE, dir), tmpLink);
  const last = join(CACHE, 'last-run');
  const prev = await lstat(last).catch(() => undefined);
  if (prev?.isDirectory() === true) await rm(last, { recursive: true, force: true }); // old layout
  await rename(tmpLink, last);
  const entries = (await readdir(runs)).sort().reverse();
  for (const e of entries.slice(KEEP_RUNS)) {
    const s = await stat(join(runs, e)).catch(() => undefined);
    if (s && Date.now() - s.mtimeMs > 3_600_000)
      await rm(join(runs, e), { recursive: true, force: true });
  }
  return dir;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const found = await discover(join(SYSTEM_DIR, 'scenarios'));
  const selected = filterScenarios(found.scenarios, opts.only);
  const runAll = process.env.VIGIL_SYSTEM_ALL === '1';
  const quarantined = runAll ? [] : selected.filter((s) => s.header.quarantine !== undefined);
  const scenarios = selected.filter((s) => !quarantined.includes(s));
  const broken = filterScenarios(found.broken, opts.only);
  if (opts.list) {
    for (const s of scenarios) {
      const h = s.header;
      const extras = [
        `timeout=${h.timeoutSec}s`,
        h.boots > 1 ? `boots=${h.boots}` : '',
        h.killAt.size ? `kill-at=${[...h.killAt].map(([b, m]) => `${b}:${m}`).join(',')}` : '',
        h.group !== undefined ? `group=${h.group}` : '',
        h.beside ? 'beside' : '',
        // a host scenario boots its own images: the harness's disks are not its
        s.kind === 'host' ? '' : `disks=${h.disks.map((d) => `${d.name}:${d.sizeMiB}M`).join(',')}`,
      ].filter(Boolean);
      out(`${s.name} (${s.kind}) ${extras.join(' ')}`);
    }
    for (const b of broken) out(`${b.name} BROKEN: ${b.reason}`);
    return;
  }
  out('TAP version 14');
  out('# Subtest: system');
  const total = scenarios.length + broken.length + quarantined.length;
  out(`    1..${total}`);
  for (const q of quarantined)
    report({
      name: q.name,
      ok: true,
      skip: `quarantined: ${q.header.quarantine ?? ''}`,
      ms: 0,
      consoleLogs: [],
    });
  for (const b of broken)
    report({
      name: b.name,
      ok: false,
      reason: `bad scenario: ${b.reason}`,
      ms: 0,
      consoleLogs: [],
    });
  if (scenarios.length > 0) {
    const runDir = await newRunDir();
    say(`run directory: ${relative(ROOT, runDir)} (also .cache/last-run)`);
    // Two lanes (lib/lanes.ts): the second starts at once with the `@beside` host scenarios
    // (the twin stories boot their own images: no guest, no staged project), the first builds
    // the guest and stages the project; both then take boot plans and host scenarios from one
    // queue, longest first. Each boot has its own disks, the guest's root is a snapshot and the
    // project image read-only, so two guests may run at once. VIGIL_SYSTEM_SERIAL=1: one lane.
    const serial = process.env.VIGIL_SYSTEM_SERIAL === '1';
    const besides = scenarios.filter((x) => x.kind === 'host' && x.header.beside);
    if (!serial && besides.length > 0)
      say(`beside the others (a second lane): ${besides.map((x) => x.name).join(', ')}`);
    let guest: GuestImage | undefined;
    let projectImage: string | undefined;
    let setupError: string | undefined;
    const setupFailed = (list: readonly Scenario[]): void => {
      for (const s of list)
        report({
          name: s.name,
          ok: false,
          reason: `setup failed: ${setupError ?? '?'}`,
          ms: 0,
          consoleLogs: [],
        });
    };
    const setup = (async (): Promise<void> => {
      try {
        const g = await ensureGuest({
          systemDir: SYSTEM_DIR,
          cacheDir: CACHE,
          rebuild: opts.rebuild,
          log: say,
        });
        guest = g.guest;
        const cold =
          g.coldBuildSeconds !== undefined ? `${g.coldBuildSeconds.toFixed(1)}s` : 'unknown';
        const line = g.built
          ? `guest ${g.key}: built from scratch in ${g.seconds.toFixed(1)}s (cold)`
          : `guest ${g.key}: cache hit in ${g.seconds.toFixed(1)}s (warm; its cold build took ${cold})`;
        out(`    # ${line}`);
        say(line);
        const p = await stageProject(ROOT, SYSTEM_DIR, CACHE, runDir);
        projectImage = p.image;
        const staged = `project staged in ${p.seconds.toFixed(1)}s (${p.sizeMiB} MiB image)`;
        out(`    # ${staged}`);
        say(staged);
        if (p.typeErrors.length > 0) {
          out(
            `    # warning: tsc reported ${p.typeErrors.length} type errors (code emitted anyway); first: ${p.typeErrors[0] ?? ''}`,
          );
        }
      } catch (err) {
        setupError = err instanceof Error ? err.message : String(err);
        say(`setup failed: ${setupError}`);
      }
    })();
    const plans = planBoots(scenarios);
    const tRun = Date.now();
    const queue: LaneJob[] = [
      ...plans.map((plan) => ({
        name: plan.id,
        weight: plan.timeoutSec,
        run: async (): Promise<void> => {
          if (guest === undefined || projectImage === undefined) {
            setupFailed(plan.scenarios);
            return;
          }
          const results = await runPlan(
            { root: ROOT, systemDir: SYSTEM_DIR, guest, projectImage, runDir, log: say },
            plan,
          );
          results.forEach(report);
        },
      })),
      ...scenarios
        .filter((x) => x.kind === 'host' && !x.header.beside)
        .map((s) => ({
          name: s.name,
          weight: s.header.timeoutSec,
          run: async (): Promise<void> => {
            if (guest === undefined) setupFailed([s]);
            else report(await runHostScenario(s, guest, runDir, projectImage));
          },
        })),
    ];
    await runLanes({
      setup,
      queue,
      beside: besides.map((s) => ({
        name: s.name,
        weight: s.header.timeoutSec,
        run: async (): Promise<void> => {
          report(await runHostScenario(s, undefined, runDir, undefined));
        },
      })),
      serial,
    });
    await rm(join(runDir, 'project.img'), { force: true });
    const runSecs = ((Date.now() - tRun) / 1000).toFixed(1);
    out(`    # scenarios: ${scenarios.length} in ${plans.length} boot plan(s), ${runSecs}s`);
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  out(`    # system suite wall time ${secs}s`);
  say(
    `done: ${total - failures - quarantined.length} passed, ${failures} failed, ${quarantined.length} quarantined in ${secs}s`,
  );
  out(`${failures === 0 ? 'ok' : 'not ok'} 1 - system # time=${secs}s`);
  out('1..1');
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((err: unknown) => {
  const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`[system] ${msg}\n`);
  out('not ok 1 - system');
  out('  ---');
  out(`  reason: ${yamlString(err instanceof Error ? err.message : String(err))}`);
  out('  exitCode: 1');
  out('  ...');
  out('1..1');
  process.exitCode = 1;
});
