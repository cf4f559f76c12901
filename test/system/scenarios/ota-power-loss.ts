// OTA power loss: the guest is killed (qemu SIGKILL = power cut) in the middle of an update,
// at one crash point of each distinct install step (metadata persisted, slot unpacked but not
// yet synced, slot marker written, trial pointer written, commit pointer written). Each next
// boot checks the device is on a good, verified version, lets the agent recover and finish
// (ending on 2.0.0, verified), then restores the 1.0.0 baseline and cuts at the next step.
// All 48 numbered points are crashed on the host (test/ota/agent.test.ts); here each cut costs
// a boot, so one point per step label.
// @timeout 600
// @boots 6
// @disk data 256M
// @memory 2048
// @kill-at 1 ota-cut
// @kill-at 2 ota-cut
// @kill-at 3 ota-cut
// @kill-at 4 ota-cut
// @kill-at 5 ota-cut
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';
import { run } from '../../../hw/os/run.js';
import { OtaAgent } from '../../../ota/agent.js';
import type { OtaOutcome } from '../../../ota/agent.js';
import { buildAppBundle } from '../../../ota/bundle.js';
import { ProcessTrialProbe } from '../../../ota/probe.js';
import { initRepo, loadRepo, release } from '../../../ota/repo.js';
import type { RepoContext } from '../../../ota/repo.js';
import { HostAppSlots, treeDigest } from '../../../ota/slots.js';
import { startStaticServer } from '../../../ota/static-server.js';
import type { StaticServer } from '../../../ota/static-server.js';
import { FetchTransport } from '../../../ota/transport.js';
import { installTrustedRoot } from '../../../ota/verify.js';
import {
  bootNumber,
  check,
  cutHere,
  log,
  outDir,
  scenario,
  scenarioDisk,
} from '../guest/harness.js';

const MNT = '/mnt/ota';
const REPO = join(MNT, 'repo');
const KEYS = join(MNT, 'keys');
const DEVICE = join(MNT, 'device');
const BASELINE = join(MNT, 'baseline');
const PLAN = join(MNT, 'plan.json');
const RESULTS = join(MNT, 'results.txt');

/** The steps to cut at, as labels in the trace of one update (last = last occurrence). */
const STEPS: readonly { name: string; label: RegExp; last?: boolean }[] = [
  { name: 'targets metadata written, not synced', label: /^ota-meta-targets:written$/ },
  { name: 'slot unpacked, tree not synced', label: /^slot-[ab]:unpacked$/ },
  { name: 'slot marker written, not synced', label: /^slot-[ab]-marker:written$/ },
  { name: 'trial pointer written, not synced', label: /^slot-pointer:written$/ },
  { name: 'commit pointer written, not synced', label: /^slot-pointer:written$/, last: true },
];

const sh = async (cmd: string, args: string[]): Promise<void> => {
  await run(cmd, args, { timeoutMs: 120_000 });
};

async function appTree(dir: string, version: string): Promise<void> {
  await mkdir(join(dir, 'dist', 'bin'), { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'vigil', version, type: 'module' }),
  );
  await writeFile(
    join(dir, 'dist', 'bin', 'vigil.js'),
    `import { readFileSync } from 'node:fs';
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
if (process.argv[2] === 'ota' && process.argv[3] === 'probe') console.log(JSON.stringify({ ok: true, version: pkg.version }));
`,
  );
  await writeFile(join(dir, 'dist', 'payload.txt'), `${version}\n`.repeat(20_000));
}

function agentFor(server: StaticServer, crash: CrashController, outcomes: OtaOutcome[]): OtaAgent {
  const fs = new DurableFs(crash);
  return new OtaAgent({
    stateDir: join(DEVICE, 'state'),
    fs,
    slots: new HostAppSlots(join(DEVICE, 'slots'), fs),
    transport: new FetchTransport({ timeoutMs: 120_000, idleMs: 60_000 }),
    repoUrl: server.url,
    channel: 'stable',
    probe: new ProcessTrialProbe(),
    health: { check: () => Promise.resolve({ ok: true, checks: { guest: { ok: true } } }) },
    busy: { isBusy: () => false },
    reporter: { report: (o) => void outcomes.push(o) },
    trialTimeoutMs: 120_000,
  });
}

/** Committed slot complete, tree = marker, bundle hash signed by the repository. */
async function verified(ctx: RepoContext): Promise<string> {
  const slots = new HostAppSlots(join(DEVICE, 'slots'), new DurableFs());
  const { pointer, markers } = await slots.status();
  const m = markers[pointer.committed];
  check(pointer.trial === undefined, 'a trial is still pending after recovery');
  check(m !== undefined, `committed slot ${pointer.committed} holds no complete install`);
  check(
    (await treeDigest(slots.dirOf(pointer.committed))) === m.treeDigest,
    'committed tree does not match its marker',
  );
  const state = await loadRepo(ctx);
  const signed = Object.values(state.targets.signed.targets).some(
    (t) => t.hashes.sha256 === m.sha256 && t.custom?.vigil?.version === m.version,
  );
  check(signed, 'committed bundle is not one the repository signed');
  return m.version;
}

async function copyTree(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  await sh('cp', ['-a', from, to]);
  await sh('sync', []);
}

scenario(async () => {
  const boot = bootNumber();
  const dev = scenarioDisk('data');
  await mkdir(MNT, { recursive: true });
  // Keep unsynced writes in the page cache so the cut really loses them.
  await writeFile('/proc/sys/vm/dirty_writeback_centisecs', '0\n');
  await writeFile('/proc/sys/vm/dirty_expire_centisecs', '360000\n');
  if (boot === 1) await sh('mkfs.ext4', ['-q', dev]);
  await sh('mount', ['-o', 'commit=600', dev, MNT]);
  const ctx: RepoContext = { repoDir: REPO, keysDir: KEYS, fs: new DurableFs() };
  const server = await startStaticServer(REPO);

  if (boot === 1) {
    await initRepo(ctx);
    for (const v of ['1.0.0', '2.0.0']) {
      await appTree(join(MNT, `app-${v}`), v);
      await buildAppBundle({
        appDir: join(MNT, `app-${v}`),
        out: join(MNT, `${v}.tar.gz`),
        fs: ctx.fs,
      });
    }
    await release(ctx, {
      bundle: await readFile(join(MNT, '1.0.0.tar.gz')),
      channel: 'stable',
      version: '1.0.0',
      kind: 'app',
    });
    await installTrustedRoot(
      ctx.fs,
      join(DEVICE, 'state', 'metadata'),
      await readFile(join(REPO, 'metadata', '1.root.json')),
    );
    const first: OtaOutcome[] = [];
    const o = await agentFor(server, new CrashController(), first).check();
    check(o.kind === 'committed', `baseline install of 1.0.0: ${JSON.stringify(o)}`);
    await release(ctx, {
      bundle: await readFile(join(MNT, '2.0.0.tar.gz')),
      channel: 'stable',
      version: '2.0.0',
      kind: 'app',
    });
    await copyTree(DEVICE, BASELINE);
    // Learn the numbering of one update on a throw-away copy.
    await copyTree(BASELINE, DEVICE);
    const tracer = new CrashController();
    const t = await agentFor(server, tracer, []).check();
    check(t.kind === 'committed', `trace run: ${JSON.stringify(t)}`);
    const trace = tracer.trace;
    const plan = STEPS.map((s) => {
      const hits = trace.filter((p) => s.label.test(p.label));
      const p = s.last === true ? hits[hits.length - 1] : hits[0];
      check(p !== undefined, `no crash point for "${s.name}" in the trace`);
      return { name: s.name, n: p.n, label: p.label };
    });
    log(
      `update passes ${String(trace.length)} crash points; cutting at ${plan.map((p) => `${String(p.n)}:${p.label}`).join(', ')}`,
    );
    await writeFile(PLAN, JSON.stringify(plan));
    await writeFile(RESULTS, '');
    await sh('sync', []);
  } else {
    // After the cut: recover, finish, and end on the new version — verified.
    const plan = JSON.parse(await readFile(PLAN, 'utf8')) as {
      name: string;
      n: number;
      label: string;
    }[];
    const step = plan[boot - 2];
    check(step !== undefined, 'no plan entry for this boot');
    const outcomes: OtaOutcome[] = [];
    // A network hiccup under TCG is a 'failed' outcome: retry; anything else must finish the update.
    let o = await agentFor(server, new CrashController(), outcomes).check();
    for (let i = 0; i < 3 && o.kind === 'failed'; i++) {
      log(`retrying after: ${JSON.stringify(o)}`);
      o = await agentFor(server, new CrashController(), outcomes).check();
    }
    const version = await verified(ctx);
    check(
      version === '2.0.0',
      `after a cut at ${step.label} the device ends on ${version}: ${JSON.stringify(o)}`,
    );
    const line = `PASS power loss at ${String(step.n)}:${step.label} (${step.name}) -> recovered: ${outcomes.map((x) => x.kind).join('+') || o.kind}, on 2.0.0 verified\n`;
    log(line.trim());
    await writeFile(RESULTS, (await readFile(RESULTS, 'utf8')) + line);
    await sh('sync', []);
  }

  if (boot <= STEPS.length) {
    const plan = JSON.parse(await readFile(PLAN, 'utf8')) as {
      name: string;
      n: number;
      label: string;
    }[];
    const step = plan[boot - 1];
    check(step !== undefined, 'no plan entry');
    await copyTree(BASELINE, DEVICE);
    const crash = new CrashController({ at: step.n, mode: 'kill', delivery: 'throw' });
    try {
      await agentFor(server, crash, []).check();
      check(false, `the update did not reach crash point ${String(step.n)}`);
    } catch (e) {
      if (!(e instanceof SimulatedCrash)) throw e;
    }
    log(`stopped at ${String(step.n)}:${step.label}; cutting the power`);
    await cutHere('ota-cut');
  }
  const results = await readFile(RESULTS, 'utf8');
  await writeFile(join(outDir(), 'ota-power-loss.txt'), results);
  process.stdout.write(results);
  check(results.trim().split('\n').length === STEPS.length, 'not every cut was recovered');
  await server.close();
  await sh('umount', [MNT]);
});
