// The fault-matrix cells "a new version that fails its health check" and "a new
// version that hangs" on the REAL restart path: a real `vigil hub` process (development
// mode, real relay on loopback, real TUF repository over HTTP) started through the real
// launcher (ota/launch.ts) by a systemd stand-in (Type=notify, WatchdogSec,
// Restart=on-failure). The hub's agent downloads the new version, stages it, the hub
// exits to be restarted, the launcher starts the new slot once, and the new hub checks
// its own health: commit, or fail and restart into the committed slot; a hang is killed
// by the watchdog and the next start runs the committed slot.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import type { Test } from 'tap';
import { SILENT } from '../../base/logger.js';
import { DurableFs } from '../../hw/os/fs.js';
import { buildAppBundle } from '../../ota/bundle.js';
import { release } from '../../ota/repo.js';
import { HostAppSlots } from '../../ota/slots.js';
import { startRelay } from '../../relay/server.js';
import type { RunningRelay } from '../../relay/server.js';
import { committedVersion, makeRepo, tempDir } from '../ota/helpers.js';
import type { Device, Repo } from '../ota/helpers.js';
import { ServiceManager } from '../ota/service-manager.js';

const ROOT = join(import.meta.dirname, '..', '..');
const PROJECT_BIN = pathToFileURL(join(ROOT, 'bin', 'vigil.ts')).href;
const LAUNCH = join(ROOT, 'ota', 'launch.ts');

type Fault = 'none' | 'relay-broken' | 'hang';

/**
 * An application tree whose `dist/bin/vigil.js` is this project's real CLI, with
 * the defect of a bad release compiled in: `relay-broken` cannot reach the relay
 * (its health check fails), `hang` blocks its event loop during its health check.
 */
async function hubTree(dir: string, version: string, fault: Fault): Promise<void> {
  await mkdir(join(dir, 'dist', 'bin'), { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'vigil', version, type: 'module' }),
  );
  // the hub speaks HTTP through node:http (base/http.ts): the defect patches http.request
  // and publishes the patch to ES module importers (syncBuiltinESMExports)
  const patch = (body: string): string => `import http from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
const real = http.request;
http.request = (o, cb) => { const health = String(o?.path ?? o).includes('/v1/health'); ${body} return real(o, cb); };
syncBuiltinESMExports();`;
  const defect =
    fault === 'relay-broken'
      ? patch(`if (health) { const req = real({ ...o, host: '127.0.0.1', hostname: '127.0.0.1', port: 9 }, cb);
  req.destroy(Object.assign(new Error('this build cannot reach the relay'), { code: 'BROKEN_BUILD' })); return req; }`)
      : fault === 'hang'
        ? patch('if (health) for (;;) {}')
        : '';
  await writeFile(
    join(dir, 'dist', 'bin', 'vigil.js'),
    `${defect}\nawait import(${JSON.stringify(PROJECT_BIN)});\n`,
  );
}

async function bundleOf(work: string, version: string, fault: Fault): Promise<string> {
  const app = join(work, `app-${version}-${fault}`);
  await hubTree(app, version, fault);
  const out = join(work, `bundle-${version}-${fault}.tar.gz`);
  await buildAppBundle({ appDir: app, out, fs: new DurableFs(), sourceDateEpoch: 1_700_000_000 });
  return out;
}

interface Rig {
  readonly work: string;
  readonly repo: Repo;
  readonly device: Device;
  readonly svc: ServiceManager;
}

async function rig(
  tt: Test,
  relay: RunningRelay,
  fault: Fault,
  trialSeconds: number,
): Promise<Rig> {
  const work = await tempDir('vigil-ota-restart-');
  const repo = await makeRepo(work);
  repo.now = new Date(); // the hub runs on the real clock
  const fs = new DurableFs();
  // The device: dev-mode hub, paired, v1.0.0 committed in slot a, root of trust in /etc.
  const root = join(work, 'device');
  const device: Device = {
    dir: root,
    stateDir: join(root, 'var/lib/vigil/ota'),
    slotsDir: join(root, 'opt/vigil'),
  };
  await mkdir(join(root, 'var/lib/vigil/data'), { recursive: true });
  await writeFile(join(root, 'var/lib/vigil/data/paired.json'), '{}');
  await mkdir(join(root, 'etc/vigil'), { recursive: true });
  await writeFile(join(root, 'etc/vigil/ota-root.json'), repo.rootBytes);
  const config = join(root, 'etc/vigil/config.json');
  await writeFile(
    config,
    JSON.stringify({
      mode: 'development',
      storage: { dataDir: '/var/lib/vigil/data' },
      relay: { url: relay.url },
      ota: { channel: 'stable', repositoryUrl: repo.server.url, pollMinutes: 60 },
    }),
  );
  const v1 = await bundleOf(work, '1.0.0', 'none');
  const slots = new HostAppSlots(device.slotsDir, fs);
  const digest = await slots.unpack('a', v1);
  const sha = (await import('node:crypto'))
    .createHash('sha256')
    .update(await readFile(v1))
    .digest('hex');
  await release(repo.ctx, {
    bundle: await readFile(v1),
    channel: 'stable',
    version: '1.0.0',
    kind: 'app',
  });
  await slots.writeMarker('a', {
    format: 'vigil-slot/1',
    version: '1.0.0',
    target: 'stable/vigil-app-1.0.0.tar.gz',
    sha256: sha,
    treeDigest: digest,
    installedAt: new Date().toISOString(),
  });
  await release(repo.ctx, {
    bundle: await readFile(await bundleOf(work, '2.0.0', fault)),
    channel: 'stable',
    version: '2.0.0',
    kind: 'app',
  });
  const svc = new ServiceManager({
    command: process.execPath,
    args: [
      '--import',
      import.meta.resolve('tsx'),
      LAUNCH,
      '--slots',
      device.slotsDir,
      '--',
      'hub',
      '--config',
      config,
      '--root',
      root,
    ],
    // Children of tap must not inherit its coverage collection.
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      VIGIL_OTA_TRIAL_SECONDS: String(trialSeconds),
    },
    dir: work,
    watchdogMs: 5000,
    restartMs: 300,
    startTimeoutMs: 120_000,
  });
  tt.teardown(async () => {
    await svc.stop();
    await repo.close();
    if (tt.passing()) await rm(work, { recursive: true, force: true });
    else tt.comment(`kept ${work}\n${svc.dump()}`);
  });
  svc.start();
  return { work, repo, device, svc };
}

interface Launch {
  slot: string;
  version: string | null;
  trial: boolean;
}
function launchOf(output: string): Launch | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('"vigil.launch"')) continue;
    return JSON.parse(line) as Launch;
  }
  return undefined;
}

async function outcomeOf(d: Device): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await readFile(join(d.stateDir, 'outcome.json'), 'utf8')) as Record<
      string,
      unknown
    >;
  } catch {
    return undefined;
  }
}

async function waitOutcome(d: Device, svc: ServiceManager, kind: string, ms: number) {
  const deadline = Date.now() + ms;
  for (;;) {
    const o = await outcomeOf(d);
    if ((o?.outcome as { kind?: string } | undefined)?.kind === kind) return o;
    if (Date.now() > deadline) throw new Error(`no "${kind}" outcome; runs:\n${svc.dump()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const matrix: [string, string, string][] = [];

let relay: RunningRelay;
t.before(async () => {
  relay = await startRelay({ dataDir: await tempDir('vigil-ota-relay-'), logger: SILENT });
});
t.teardown(async () => {
  await relay.close();
  const w = Math.max(...matrix.map((m) => m[0].length));
  t.comment(
    `OTA restart-path matrix:\n${matrix.map(([c, r, d]) => `  ${c.padEnd(w)}  ${r}  ${d}`).join('\n')}`,
  );
});

t.test('a healthy new version: restart, trial start, self-check, commit', async (tt) => {
  const { device, svc, repo } = await rig(tt, relay, 'none', 120);
  await svc.waitFor((runs) => runs.length >= 2 && runs[1]?.ready === true, 180_000);
  const o = await waitOutcome(device, svc, 'committed', 120_000);
  const [first, second] = svc.runs;
  tt.equal(first?.exitCode, 75, 'the old hub exits to be restarted into the trial');
  tt.match(launchOf(first?.output ?? ''), { slot: 'a', version: '1.0.0', trial: false });
  tt.match(launchOf(second?.output ?? ''), { slot: 'b', version: '2.0.0', trial: true });
  tt.match(o?.outcome, { kind: 'committed', version: '2.0.0', from: '1.0.0' });
  const end = await committedVersion(device, repo);
  tt.ok(end.verified, `the committed slot is verified (${end.reason})`);
  tt.equal(end.version, '2.0.0');
  const st = await new HostAppSlots(device.slotsDir, new DurableFs()).status();
  tt.equal(st.pointer.committed, 'b');
  tt.equal(st.pointer.trial, undefined);
  tt.equal(second?.why, 'running', 'the new version keeps running');
  matrix.push([
    'new version healthy (restart path)',
    tt.passing() ? 'PASS' : 'FAIL',
    'committed 2.0.0 in slot b',
  ]);
});

async function agentState(d: Device): Promise<{ bad: string[]; attempts: Record<string, number> }> {
  return JSON.parse(await readFile(join(d.stateDir, 'agent.json'), 'utf8')) as {
    bad: string[];
    attempts: Record<string, number>;
  };
}

t.test(
  'a new version that fails its health check: restart, self-check fails, back to the committed slot',
  async (tt) => {
    const { device, svc, repo } = await rig(tt, relay, 'relay-broken', 8);
    const o = await waitOutcome(device, svc, 'rolled-back', 240_000);
    const [first, second, third] = svc.runs;
    tt.equal(first?.exitCode, 75, 'the old hub exits to be restarted into the trial');
    tt.match(launchOf(second?.output ?? ''), { slot: 'b', version: '2.0.0', trial: true });
    tt.equal(second?.why, 'exit');
    tt.equal(second?.exitCode, 76, 'the trial version exits after its failed self-check');
    tt.match(launchOf(third?.output ?? ''), { slot: 'a', version: '1.0.0', trial: false });
    tt.match(o?.outcome, {
      kind: 'rolled-back',
      version: '2.0.0',
      to: '1.0.0',
      reason:
        /health check failed: relay \(relay .* unreachable: request failed \(BROKEN_BUILD: this build cannot reach the relay\)\)/,
    });
    tt.same((await agentState(device)).bad, ['2.0.0'], 'the version is never tried again');
    const end = await committedVersion(device, repo);
    tt.ok(end.verified, `the committed slot is verified (${end.reason})`);
    tt.equal(end.version, '1.0.0');
    tt.equal(third?.why, 'running', 'the old version keeps running');
    matrix.push([
      'new version fails its health check (restart path)',
      tt.passing() ? 'PASS' : 'FAIL',
      'trial exit 76, next start runs 1.0.0, marked bad',
    ]);
  },
);

t.test(
  'a new version that hangs: the watchdog kills it, the next start runs the committed slot',
  async (tt) => {
    const { device, svc, repo } = await rig(tt, relay, 'hang', 120);
    const o = await waitOutcome(device, svc, 'rolled-back', 240_000);
    const [first, second, third] = svc.runs;
    tt.equal(first?.exitCode, 75, 'the old hub exits to be restarted into the trial');
    tt.match(launchOf(second?.output ?? ''), { slot: 'b', version: '2.0.0', trial: true });
    tt.equal(second?.ready, true, 'the trial version started (READY=1) before it hung');
    tt.equal(second?.why, 'watchdog', 'killed by the watchdog');
    tt.match(launchOf(third?.output ?? ''), { slot: 'a', version: '1.0.0', trial: false });
    tt.match(o?.outcome, {
      kind: 'rolled-back',
      version: '2.0.0',
      to: '1.0.0',
      reason: /did not confirm its health before its commit/,
    });
    const st = await agentState(device);
    tt.same(st.attempts, { '2.0.0': 1 }, 'one interrupted attempt counted (bad after 3)');
    // Not retried at once: the next try waits for the next poll.
    await new Promise((r) => setTimeout(r, 3000));
    tt.equal(svc.runs.length, 3, 'no immediate retry');
    tt.equal(third?.why, 'running', 'the old version keeps running');
    const end = await committedVersion(device, repo);
    tt.ok(end.verified, `the committed slot is verified (${end.reason})`);
    tt.equal(end.version, '1.0.0');
    matrix.push([
      'new version hangs (restart path)',
      tt.passing() ? 'PASS' : 'FAIL',
      'watchdog kill, next start runs 1.0.0',
    ]);
  },
);
