/**
 * The OTA fault matrix: each cell drives the real agent against a real
 * repository served over loopback HTTP, injects one fault, and asserts the
 * device ends on a good, verified version (committed slot complete, tree
 * matching its marker, bundle hash signed by the repository). The matrix is
 * printed at the end with pass/fail per cell.
 *
 * Crash cells crash at EVERY numbered crash point of a full update (learned
 * from CrashController.trace), both as a kill and as a power loss (unsynced
 * writes rolled back), in-process (`throw` delivery), then restart the agent.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { CrashController, DurableFs, SimulatedCrash } from '../../hw/os/fs.js';
import type { CrashMode } from '../../hw/os/fs.js';
import { generateSigningKey } from '../../ota/keys.js';
import { nextDelay, OtaAgent, pickCandidate, targetUrl } from '../../ota/agent.js';
import { addDays, SPEC_VERSION, tufDate } from '../../ota/metadata.js';
import { refresh } from '../../ota/repo.js';
import { encodeEnvelope, signEnvelope } from '../../ota/signatures.js';
import { HostAppSlots } from '../../ota/slots.js';
import { serveStatic, startStaticServer } from '../../ota/static-server.js';
import { FetchTransport } from '../../ota/transport.js';
import {
  cloneDevice,
  committedVersion,
  deviceAt,
  healthy,
  makeAgent,
  makeBundle,
  makeDevice,
  makeRepo,
  publish,
  T0,
  tempDir,
} from './helpers.js';
import type { AppBehaviour, Device, Repo } from './helpers.js';

const cells: { name: string; fn: () => Promise<string> }[] = [];
const cleanups: (() => Promise<void>)[] = [];

/** Register a matrix cell; cells run concurrently (independent repositories and devices). */
function cell(name: string, fn: () => Promise<string>): void {
  cells.push({ name, fn });
}

function must(cond: boolean, what: string): void {
  if (!cond) throw new Error(what);
}

/** Run `fns` with at most `n` at a time. */
async function limited<R>(n: number, fns: readonly (() => Promise<R>)[]): Promise<R[]> {
  const out: R[] = new Array<R>(fns.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, fns.length) }, async () => {
      for (let i = next++; i < fns.length; i = next++) out[i] = await fns[i]!();
    }),
  );
  return out;
}

let basePromise: Promise<string> | undefined;

/** Built once: a repository with 1.0.0 released and a device that installed and committed it. */
async function buildBase(): Promise<string> {
  const b = await tempDir('vigil-ota-base-');
  // Used by every cell and the tests after the matrix: removed when the process ends.
  process.once('exit', () => {
    rmSync(b, { recursive: true, force: true });
  });
  const repo = await makeRepo(b);
  await publish(repo, b, '1.0.0');
  const device = await makeDevice(b, repo);
  const first = await makeAgent(device, repo).agent.check();
  await repo.close();
  must(first.kind === 'committed', `the base device installs 1.0.0 (${JSON.stringify(first)})`);
  return b;
}

/** A copy of the base world for one cell. */
async function world(): Promise<{ work: string; repo: Repo; device: Device }> {
  const base = await (basePromise ??= buildBase());
  const work = await tempDir();
  const repo = await makeRepo(work, base);
  cleanups.push(async () => {
    await repo.close();
    await rm(work, { recursive: true, force: true });
  });
  await cp(join(base, 'device'), join(work, 'device'), { recursive: true });
  return { work, repo, device: deviceAt(work) };
}

async function endsOn(device: Device, repo: Repo, version: string): Promise<void> {
  const c = await committedVersion(device, repo);
  must(c.verified, `device on a verified version (${c.reason})`);
  must(c.version === version, `device runs ${version} (got ${c.version})`);
}

cell('bad signature (timestamp signed by an unknown key)', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  const real = JSON.parse(
    await readFile(join(repo.ctx.repoDir, 'metadata', 'timestamp.json'), 'utf8'),
  ) as { signed: unknown };
  const forged = signEnvelope(real.signed, [generateSigningKey('timestamp')]);
  repo.faults.replace.set('/metadata/timestamp.json', Buffer.from(encodeEnvelope(forged)));
  const o = await makeAgent(device, repo).agent.check();
  must(
    o.kind === 'refused' && o.failure === 'signature',
    `refused as signature: ${JSON.stringify(o)}`,
  );
  await endsOn(device, repo, '1.0.0');
  repo.faults.replace.clear();
  const o2 = await makeAgent(device, repo).agent.check();
  must(o2.kind === 'committed', 'the genuine metadata installs 2.0.0 afterwards');
  await endsOn(device, repo, '2.0.0');
  return 'refused (signature); 2.0.0 after the fault cleared';
});

cell('expired timestamp', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  const late = new Date(T0.getTime() + 2 * 86_400_000);
  const o = await makeAgent(device, repo, { now: () => late }).agent.check();
  must(o.kind === 'refused' && o.failure === 'expired', `refused as expired: ${JSON.stringify(o)}`);
  await endsOn(device, repo, '1.0.0');
  repo.now = late;
  await refresh(repo.ctx);
  const o2 = await makeAgent(device, repo, { now: () => late }).agent.check();
  must(o2.kind === 'committed', 're-signed timestamp: update proceeds');
  return 'refused (expired); 2.0.0 after `refresh`';
});

cell('rollback to an older version', async () => {
  const { work, repo, device } = await world();
  const oldTs = await readFile(join(repo.ctx.repoDir, 'metadata', 'timestamp.json'));
  await publish(repo, work, '2.0.0');
  must((await makeAgent(device, repo).agent.check()).kind === 'committed', '2.0.0 installed');
  // (a) replay an older (validly signed) timestamp: metadata rollback.
  repo.faults.replace.set('/metadata/timestamp.json', oldTs);
  const o = await makeAgent(device, repo).agent.check();
  must(
    o.kind === 'refused' && o.failure === 'rollback',
    `old timestamp refused as rollback: ${JSON.stringify(o)}`,
  );
  repo.faults.replace.clear();
  // (b) a correctly signed repository whose newest bundle is older than the installed one.
  const tree = (await import('../../ota/repo.js')).loadRepo;
  const state = await tree(repo.ctx);
  const cand = pickCandidate(state.targets.signed, 'stable', 'app', '2.0.0', []);
  must(cand === undefined, 'an older signed bundle is never a candidate');
  await endsOn(device, repo, '2.0.0');
  return 'old timestamp refused (rollback); no downgrade candidate';
});

cell('freeze (stale metadata replayed)', async () => {
  const { work, repo, device } = await world();
  const frozen = new Map<string, Buffer>();
  for (const f of ['timestamp.json', '2.snapshot.json', '2.targets.json'])
    frozen.set(`/metadata/${f}`, await readFile(join(repo.ctx.repoDir, 'metadata', f)));
  repo.now = new Date(T0.getTime() + 3600_000);
  await publish(repo, work, '2.0.0');
  // The attacker keeps serving the metadata seen before the release.
  for (const [k, v] of frozen) repo.faults.replace.set(k, v);
  const later = new Date(T0.getTime() + 3 * 86_400_000);
  const o = await makeAgent(device, repo, { now: () => later }).agent.check();
  must(
    o.kind === 'refused' && o.failure === 'expired',
    `frozen metadata refused: ${JSON.stringify(o)}`,
  );
  // The clock falls back (no RTC): the verified-time floor still refuses the stale copy.
  repo.faults.replace.clear();
  repo.now = later;
  await refresh(repo.ctx);
  must(
    (await makeAgent(device, repo, { now: () => later }).agent.check()).kind === 'committed',
    'fresh metadata installs 2.0.0',
  );
  for (const [k, v] of frozen) repo.faults.replace.set(k, v);
  const o3 = await makeAgent(device, repo, {
    now: () => new Date('2000-01-01T00:00:00Z'),
  }).agent.check();
  must(
    o3.kind === 'refused',
    `with the clock reset to 2000 the frozen copy is still refused (${JSON.stringify(o3)})`,
  );
  await endsOn(device, repo, '2.0.0');
  return 'refused (expired), also with the clock set back';
});

cell('mix-and-match snapshot', async () => {
  const { work, repo, device } = await world();
  const oldSnap = await readFile(join(repo.ctx.repoDir, 'metadata', '2.snapshot.json'));
  await publish(repo, work, '2.0.0');
  // timestamp names snapshot 3; serve the (validly signed) snapshot 2 under that name.
  repo.faults.replace.set('/metadata/3.snapshot.json', oldSnap);
  const o = await makeAgent(device, repo).agent.check();
  must(
    o.kind === 'refused' && ['mix-and-match', 'hash', 'length'].includes(o.failure),
    `refused: ${JSON.stringify(o)}`,
  );
  await endsOn(device, repo, '1.0.0');
  return `refused (${o.kind === 'refused' ? o.failure : ''})`;
});

cell('hash mismatch (tampered bundle)', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  const st = await (await import('../../ota/repo.js')).loadRepo(repo.ctx);
  const tf = st.targets.signed.targets['stable/vigil-app-2.0.0.tar.gz'];
  const sha = tf?.hashes.sha256 ?? '';
  const urlPath = `/targets/stable/${sha}.vigil-app-2.0.0.tar.gz`;
  const good = await readFile(join(repo.ctx.repoDir, urlPath));
  const bad = Buffer.from(good);
  bad[bad.length >> 1] = (bad[bad.length >> 1] ?? 0) ^ 0xff;
  repo.faults.replace.set(urlPath, bad);
  const o = await makeAgent(device, repo).agent.check();
  must(o.kind === 'refused' && o.failure === 'hash', `refused as hash: ${JSON.stringify(o)}`);
  await endsOn(device, repo, '1.0.0');
  repo.faults.replace.clear();
  must(
    (await makeAgent(device, repo).agent.check()).kind === 'committed',
    'genuine bundle installs',
  );
  await endsOn(device, repo, '2.0.0');
  return 'refused (hash); 2.0.0 after the fault cleared';
});

cell('truncated download then resume', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  repo.faults.truncateOnce.set('vigil-app-2.0.0', 1500);
  const progress: number[] = [];
  const o = await makeAgent(device, repo).agent.check();
  must(o.kind === 'failed', `first attempt fails mid-download: ${JSON.stringify(o)}`);
  await endsOn(device, repo, '1.0.0');
  const parts = (await import('node:fs/promises')).readdir(join(device.stateDir, 'downloads'));
  const part = (await parts).find((f) => f.endsWith('.part'));
  must(part !== undefined, 'a partial download is kept');
  const partSize = (await stat(join(device.stateDir, 'downloads', part ?? ''))).size;
  must(
    partSize > 0 && partSize <= 1500,
    `the part holds the bytes received before the cut (${String(partSize)})`,
  );
  const rig = makeAgent(device, repo, {
    extra: { onProgress: (p) => progress.push(p.resumedFrom) },
  });
  const o2 = await rig.agent.check();
  must(o2.kind === 'committed', 'second attempt completes');
  must(
    progress.length > 0 && progress.every((r) => r === partSize),
    `it resumed from byte ${String(partSize)} (HTTP Range)`,
  );
  must(
    repo.faults.requests.filter((r) => r.includes('vigil-app-2.0.0')).length === 2,
    'two requests for the bundle: the cut one and the ranged one',
  );
  await endsOn(device, repo, '2.0.0');
  return `resumed from byte ${String(partSize)}, committed 2.0.0`;
});

async function badVersion(
  behaviour: AppBehaviour,
  healthFails: boolean,
  expectReason: RegExp,
): Promise<string> {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0', behaviour);
  const health = healthFails
    ? () => ({
        ok: false,
        checks: {
          camera: { ok: true },
          mls: { ok: false, detail: 'state does not decode' },
          relay: { ok: true },
          storage: { ok: true },
        },
      })
    : healthy;
  const o = await makeAgent(device, repo, {
    health,
    extra: { trialTimeoutMs: behaviour === 'hang' ? 3000 : 30_000 },
  }).agent.check();
  must(o.kind === 'rolled-back', `rolled back: ${JSON.stringify(o)}`);
  must(
    o.kind === 'rolled-back' && expectReason.test(o.reason),
    `reason names the failure (${o.kind === 'rolled-back' ? o.reason : ''})`,
  );
  await endsOn(device, repo, '1.0.0');
  const again = await makeAgent(device, repo).agent.check();
  must(again.kind === 'up-to-date', 'the failed version is not retried');
  await publish(repo, work, '2.0.1');
  must(
    (await makeAgent(device, repo).agent.check()).kind === 'committed',
    'a fixed 2.0.1 installs',
  );
  await endsOn(device, repo, '2.0.1');
  return o.kind === 'rolled-back' ? o.reason : '';
}

cell('new version fails its health check (health port)', () => badVersion('healthy', true, /mls/));
cell('new version fails its health check (its own probe)', () =>
  badVersion('unhealthy', false, /unhealthy/),
);
cell('new version hangs (watchdog)', () => badVersion('hang', false, /did not answer|hang/));

cell('health check port hangs (watchdog)', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  const o = await makeAgent(device, repo, {
    health: () => new Promise(() => undefined),
    // Long enough for the probe to answer on a loaded machine; the health check never does.
    extra: { trialTimeoutMs: 15_000 },
  }).agent.check();
  must(
    o.kind === 'rolled-back' && /health check did not finish/.test(o.reason),
    `rolled back on the health check's timeout: ${JSON.stringify(o)}`,
  );
  await endsOn(device, repo, '1.0.0');
  return o.kind === 'rolled-back' ? o.reason : '';
});

cell('waits for a safe moment (no clip recording)', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  let busyCalls = 0;
  let committedWhileBusy = false;
  const rig = makeAgent(device, repo, {
    busy: () => {
      busyCalls += 1;
      return busyCalls < 4;
    },
    health: () => {
      committedWhileBusy = busyCalls < 4;
      return healthy();
    },
  });
  const o = await rig.agent.check();
  must(o.kind === 'committed', 'committed after the recording ended');
  must(
    busyCalls >= 4 && !committedWhileBusy,
    `switched only once isBusy() said no (${String(busyCalls)} calls)`,
  );
  return `${String(busyCalls)} isBusy() polls before the switch`;
});

// ---- crash at every numbered point --------------------------------------------

cell('crash matrix setup: trace one full update', async () => {
  const { work, repo, device } = await world();
  await publish(repo, work, '2.0.0');
  const tracer = new CrashController();
  const traceDevice = await cloneDevice(device, join(work, 'trace-device'));
  const traced = await makeAgent(traceDevice, repo, { crash: tracer }).agent.check();
  must(traced.kind === 'committed', `trace run commits (${traced.kind})`);
  crashSetup = { work, repo, device, points: [...tracer.trace] };
  must(
    tracer.trace.length > 20,
    `a full update passes ${String(tracer.trace.length)} crash points`,
  );
  return tracer.trace.map((p) => `${String(p.n)}:${p.label}`).join(' ');
});

let crashSetup:
  { work: string; repo: Repo; device: Device; points: { n: number; label: string }[] } | undefined;

/** Crash at every point in `mode`, restart, and check the device each time. */
async function crashEverywhere(mode: CrashMode): Promise<string> {
  must(crashSetup !== undefined, 'the trace cell ran');
  const { work, repo, device, points } = crashSetup!;
  const failures: string[] = [];
  const after = new Map<string, number>();
  await limited(
    4,
    points.map((p) => async () => {
      const dev = await cloneDevice(device, join(work, `crash-${mode}-${String(p.n)}`));
      const crash = new CrashController({ at: p.n, mode, delivery: 'throw' });
      try {
        await makeAgent(dev, repo, { crash }).agent.check();
        failures.push(`${String(p.n)}:${p.label} did not crash`);
        return;
      } catch (e) {
        if (!(e instanceof SimulatedCrash)) {
          failures.push(`${String(p.n)}:${p.label} threw ${(e as Error).message}`);
          return;
        }
      }
      // Right after the crash: the committed slot is a good version (a pending trial is dropped at restart).
      const mid = await committedVersion(dev, repo);
      const pending =
        (await new HostAppSlots(dev.slotsDir, new DurableFs()).status()).pointer.trial !==
        undefined;
      if (!pending && (!mid.verified || !['1.0.0', '2.0.0'].includes(mid.version))) {
        failures.push(`${String(p.n)}:${p.label} left ${mid.version} (${mid.reason})`);
      }
      // Restart: recovery, then the update completes.
      const o = await makeAgent(dev, repo).agent.check();
      const end = await committedVersion(dev, repo);
      if (!end.verified || end.version !== '2.0.0') {
        failures.push(
          `${String(p.n)}:${p.label} ended on ${end.version} (${end.reason}; ${o.kind})`,
        );
      }
      after.set(o.kind, (after.get(o.kind) ?? 0) + 1);
      await rm(dev.dir, { recursive: true, force: true });
    }),
  );
  must(
    failures.length === 0,
    `every crash point recovers to a verified version${failures.length ? `: ${failures.join('; ')}` : ''}`,
  );
  return `${String(points.length)} points; after restart: ${[...after].map(([k, v]) => `${k}=${String(v)}`).join(', ')}`;
}

// ---- run the matrix -----------------------------------------------------------------

const crashCells = (['kill', 'power-loss'] as CrashMode[]).map((mode) => ({
  name: `${mode === 'kill' ? 'process killed' : 'power loss (simulated)'} at every numbered install step`,
  fn: () => crashEverywhere(mode),
}));
const results = await limited(
  4,
  cells.map((c) => async () => {
    try {
      return { name: c.name, ok: true, detail: await c.fn() };
    } catch (e) {
      return { name: c.name, ok: false, detail: (e as Error).message };
    }
  }),
);
for (const c of crashCells) {
  try {
    results.push({ name: c.name, ok: true, detail: await c.fn() });
  } catch (e) {
    results.push({ name: c.name, ok: false, detail: (e as Error).message });
  }
}
for (const r of results) t.ok(r.ok, `${r.name}: ${r.detail}`);
for (const c of cleanups.splice(0)) await c();

// ---- small pure parts ----------------------------------------------------------

t.test('poll interval has bounded jitter', async (tt) => {
  tt.equal(
    nextDelay(60_000, 0.25, () => 0),
    45_000,
  );
  tt.equal(
    nextDelay(60_000, 0.25, () => 1),
    75_000,
  );
  tt.equal(
    nextDelay(60_000, 0.25, () => 0.5),
    60_000,
  );
  tt.equal(
    nextDelay(10, 0.5, () => 0),
    1000,
    'never below one second',
  );
});

t.test('run() polls until aborted', async (tt) => {
  tt.teardown(async () => {
    for (const c of cleanups.splice(0)) await c();
  });
  const { repo, device } = await world();
  const ac = new AbortController();
  let checks = 0;
  const rig = makeAgent(device, repo, {
    extra: { intervalMs: 1000, jitter: 0, reporter: { report: () => undefined } },
  });
  const orig = rig.agent.check.bind(rig.agent);
  rig.agent.check = async (s?: AbortSignal) => {
    checks += 1;
    if (checks === 2) ac.abort();
    return orig(s);
  };
  await rig.agent.run(ac.signal);
  tt.equal(checks, 2, 'second poll after the interval, then stopped');
});

t.test('an agent without a reachable repository fails cleanly', async (tt) => {
  tt.teardown(async () => {
    for (const c of cleanups.splice(0)) await c();
  });
  const { repo, device } = await world();
  const rig = makeAgent(device, repo, {
    extra: { repoUrl: 'http://127.0.0.1:9', transport: new FetchTransport({ timeoutMs: 2000 }) },
  });
  const o = await rig.agent.check();
  tt.equal(o.kind, 'failed', 'an unreachable repository is a failure to retry, not a refusal');
  tt.match(o.kind === 'failed' ? o.reason : '', /cannot fetch/);
  await endsOn(device, repo, '1.0.0');
  tt.ok(rig.agent instanceof OtaAgent);
});

{
  const rows = results.filter((r) => !r.name.startsWith('crash matrix setup'));
  const w = Math.max(...rows.map((m) => m.name.length));
  const lines = ['', 'OTA fault matrix', `${'cell'.padEnd(w)}  result  detail`];
  for (const m of rows)
    lines.push(`${m.name.padEnd(w)}  ${m.ok ? 'PASS  ' : 'FAIL  '}  ${m.detail}`);
  lines.push('(power loss with the guest killed: test/system/scenarios/ota-power-loss.ts)');
  console.log(lines.join('\n'));
}

t.test(
  'restart trials: staged, launched, self-checked; rollbacks reported by the old version',
  async (tt) => {
    tt.teardown(async () => {
      for (const c of cleanups.splice(0)) await c();
    });
    const { work, repo, device } = await world();
    await publish(repo, work, '2.0.0');
    const restarts: unknown[] = [];
    const reported: string[] = [];
    let reporterUp = true;
    let healthOk = true;
    const mk = () =>
      makeAgent(device, repo, {
        health: () =>
          healthOk
            ? healthy()
            : { ok: false, checks: { relay: { ok: false, detail: 'unreachable' } } },
        extra: {
          restart: {
            restartIntoTrial: (tr) => {
              restarts.push(tr);
              return Promise.resolve();
            },
          },
          reporter: {
            report: (o) => {
              if (!reporterUp) throw new Error('no config channel');
              reported.push(`${o.kind} ${o.version}`);
            },
          },
        },
      });
    const slots = new HostAppSlots(device.slotsDir, new DurableFs());
    // 1. Staged and handed to the restart; the old version keeps running meanwhile.
    tt.match(await mk().agent.check(), { kind: 'restarting', version: '2.0.0', from: '1.0.0' });
    tt.same(restarts, [{ slot: 'a', version: '2.0.0', from: '1.0.0' }]);
    tt.match((await slots.status()).pointer, { committed: 'b', trial: { stage: 'pending' } });
    // 2. The launcher starts it; the new version's health check fails.
    await slots.markLaunched();
    tt.match(await mk().agent.confirmTrial('9.9.9'), { kind: 'not-a-trial' });
    healthOk = false;
    tt.match(await mk().agent.confirmTrial('2.0.0', { timeoutMs: 5000 }), {
      kind: 'rolled-back',
      reason: 'health check failed: relay (unreachable)',
    });
    tt.match((await slots.status()).pointer.trial, { stage: 'failed' });
    tt.same(reported, [], 'the failing version does not report');
    // 3. The old version's agent reports the rollback; 2.0.0 is bad at once.
    healthOk = true;
    tt.match(await mk().agent.check(), {
      kind: 'rolled-back',
      version: '2.0.0',
      to: '1.0.0',
      reason: 'health check failed: relay (unreachable)',
    });
    tt.same(reported, ['rolled-back 2.0.0']);
    tt.match(await mk().agent.check(), { kind: 'up-to-date', version: '1.0.0' }, 'never retried');
    await endsOn(device, repo, '1.0.0');
    // 4. A version that hangs: launched, never confirmed. Counted, retried at the next poll.
    await publish(repo, work, '3.0.0');
    tt.match(await mk().agent.check(), { kind: 'restarting', version: '3.0.0' });
    await slots.markLaunched();
    reporterUp = false;
    tt.match(await mk().agent.check(), {
      kind: 'rolled-back',
      version: '3.0.0',
      reason: /did not confirm its health/,
    });
    tt.equal(restarts.length, 2, 'no second restart in the same check');
    tt.equal((await slots.status()).pointer.trial, undefined);
    const state = JSON.parse(await readFile(join(device.stateDir, 'agent.json'), 'utf8')) as {
      attempts: Record<string, number>;
      bad: string[];
    };
    tt.same(state.attempts, { '3.0.0': 1 });
    tt.same(state.bad, ['2.0.0']);
    tt.match(await mk().agent.lastOutcome(), {
      delivered: false,
      outcome: { kind: 'rolled-back' },
    });
    reporterUp = true;
    tt.equal(await mk().agent.deliverPending(), true, 'sent once the channel is back');
    tt.equal(await mk().agent.deliverPending(), false, 'and only once');
    // 5. The next poll tries again; this time it confirms itself.
    tt.match(await mk().agent.check(), { kind: 'restarting', version: '3.0.0' });
    await slots.markLaunched();
    tt.match(await mk().agent.confirmTrial('3.0.0'), {
      kind: 'committed',
      version: '3.0.0',
      from: '1.0.0',
    });
    await endsOn(device, repo, '3.0.0');
    const after = JSON.parse(await readFile(join(device.stateDir, 'agent.json'), 'utf8')) as {
      attempts: Record<string, number>;
    };
    tt.same(after.attempts, {}, 'attempts cleared by the commit');
    tt.same(reported.at(-1), 'committed 3.0.0');
    // 6. Staged but never restarted into (no launcher ran): dropped without counting.
    await publish(repo, work, '4.0.0');
    tt.match(await mk().agent.check(), { kind: 'restarting', version: '4.0.0' });
    tt.match(await mk().agent.check(), {
      kind: 'rolled-back',
      reason: 'the restart into the trial did not happen',
    });
  },
);

t.test(
  'target file names follow the root: hash-prefixed only with consistent snapshots',
  async (tt) => {
    const cand = { name: 'stable/vigil-app-2.0.0.tar.gz', sha256: 'ab'.repeat(32) };
    tt.equal(
      targetUrl('http://r/ota/', cand, true),
      `http://r/ota/targets/stable/${'ab'.repeat(32)}.vigil-app-2.0.0.tar.gz`,
    );
    tt.equal(
      targetUrl('http://r/ota', cand, false),
      'http://r/ota/targets/stable/vigil-app-2.0.0.tar.gz',
    );
  },
);

t.test('conformance: a repository without consistent snapshots updates the device', async (tt) => {
  // Built by hand (our release tool always publishes consistent snapshots): plain
  // metadata and target names only, as TUF 5.7.3 allows when consistent_snapshot is false.
  const work = await tempDir();
  const dir = join(work, 'plain-repo');
  const bundle = await makeBundle(work, '2.0.0', 'healthy');
  const k = {
    root: generateSigningKey('root'),
    targets: generateSigningKey('targets'),
    snapshot: generateSigningKey('snapshot'),
    timestamp: generateSigningKey('timestamp'),
  };
  const expires = tufDate(addDays(T0, 365));
  const head = { spec_version: SPEC_VERSION, version: 1, expires };
  const one = (key: { keyid: string }) => ({ keyids: [key.keyid], threshold: 1 });
  const root = {
    _type: 'root',
    ...head,
    consistent_snapshot: false,
    keys: Object.fromEntries(Object.values(k).map((x) => [x.keyid, x.public])),
    roles: {
      root: one(k.root),
      targets: one(k.targets),
      snapshot: one(k.snapshot),
      timestamp: one(k.timestamp),
    },
  };
  const name = 'stable/vigil-app-2.0.0.tar.gz';
  const hash = (alg: string) => createHash(alg).update(bundle).digest('hex');
  const targets = {
    _type: 'targets',
    ...head,
    targets: {
      [name]: {
        length: bundle.length,
        hashes: { sha256: hash('sha256'), sha512: hash('sha512') },
        custom: { vigil: { version: '2.0.0', channel: 'stable', kind: 'app' } },
      },
    },
  };
  const snapshot = { _type: 'snapshot', ...head, meta: { 'targets.json': { version: 1 } } };
  const timestamp = { _type: 'timestamp', ...head, meta: { 'snapshot.json': { version: 1 } } };
  await mkdir(join(dir, 'metadata'), { recursive: true });
  await mkdir(join(dir, 'targets', 'stable'), { recursive: true });
  const rootBytes = Buffer.from(encodeEnvelope(signEnvelope(root, [k.root])));
  const files: [string, string | Buffer][] = [
    ['metadata/root.json', rootBytes],
    ['metadata/targets.json', encodeEnvelope(signEnvelope(targets, [k.targets]))],
    ['metadata/snapshot.json', encodeEnvelope(signEnvelope(snapshot, [k.snapshot]))],
    ['metadata/timestamp.json', encodeEnvelope(signEnvelope(timestamp, [k.timestamp]))],
    [`targets/${name}`, bundle],
  ];
  for (const [f, b] of files) await writeFile(join(dir, f), b);
  const requests: string[] = [];
  const plain = serveStatic(dir);
  const server = await startStaticServer(dir, {
    handler: (req: IncomingMessage, res: ServerResponse) => {
      requests.push(new URL(req.url ?? '/', 'http://x').pathname);
      plain(req, res);
    },
  });
  tt.teardown(async () => {
    await server.close();
    await rm(work, { recursive: true, force: true });
  });
  // makeDevice/makeAgent read only these fields of a Repo.
  const repo = { rootBytes, now: T0, server } as unknown as Repo;
  const device = await makeDevice(work, repo);
  const rig = makeAgent(device, repo, {
    extra: { repoUrl: server.url, reporter: { report: () => undefined } },
  });
  const o = await rig.agent.check();
  tt.match(o, { kind: 'committed', version: '2.0.0' });
  tt.ok(requests.includes(`/targets/${name}`), 'fetched under its plain name');
  tt.notOk(
    requests.some((p) => p.includes(hash('sha256'))),
    'no hash-prefixed name asked for',
  );
  tt.equal(
    (await rig.slots.status()).markers[(await rig.slots.status()).pointer.committed]?.version,
    '2.0.0',
  );
});
