// The OTA wiring around the hub's services, in process, with a real repository over
// HTTP, real slots and a stand-in for the rest of the hub (the real restart path with a
// real hub process is test/integration/ota-restart.test.ts).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { parseConfig } from '../../firmware/config/config.js';
import { JsonLogger, MemoryLogger } from '../../base/logger.js';
import type { HubServices } from '../../firmware/supervisor/hub.js';
import type { Event } from '../../firmware/supervisor/state.js';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import {
  ENV_TRIAL_SECONDS,
  OTA_PATHS,
  TRIAL_FAILED_EXIT,
  TRIAL_RESTART_EXIT,
  treeVersion,
  withOta,
} from '../../bin/hub-ota.js';
import { ENV_TRIAL } from '../../ota/launcher.js';
import type { AppSender } from '../../ota/report.js';
import { OTA_REPORT_TOPIC, decodeOtaReport } from '../../protocol/ota-report.js';
import type { OtaReport } from '../../protocol/ota-report.js';
import { HostAppSlots } from '../../ota/slots.js';
import { makeRepo, publish, tempDir } from '../ota/helpers.js';
import { encodeBundle, BUNDLE_FILE } from '../../protocol/provisioning-bundle.js';
import { newIdentity } from '../../protocol/identity.js';
import { OTA_ROOT_FILE } from '../../protocol/services.js';
import type { Repo } from '../ota/helpers.js';

/** The rest of the hub: a class with private state, like DevServices. */
class Inner implements HubServices {
  readonly #calls: string[] = [];
  paired: () => Promise<boolean> = () => Promise.resolve(true);
  channel: AppSender | undefined;
  get calls(): string[] {
    return this.#calls;
  }
  get configChannel(): AppSender | undefined {
    return this.channel;
  }
  unlockStorage() {
    return Promise.resolve({ ok: true as const, dataDir: '/data' });
  }
  isPaired() {
    return this.paired();
  }
  startPairing() {
    return Promise.resolve();
  }
  stopPairing() {
    return Promise.resolve();
  }
  startServices() {
    this.#calls.push('start');
    return Promise.resolve();
  }
  stopServices() {
    this.#calls.push('stop');
    return Promise.resolve();
  }
  applyUpdate() {
    this.#calls.push('apply');
    return Promise.resolve('rolled-back' as const);
  }
  status() {
    return { mode: 'development' };
  }
  extra(): string {
    return `extra ${String(this.#calls.length)}`;
  }
}

interface Rig {
  root: string;
  paths: HostPaths;
  repo: Repo;
  slots: HostAppSlots;
  data: string;
}

async function rig(tt: Test, opts: { root?: boolean } = {}): Promise<Rig> {
  const root = await tempDir();
  const repo = await makeRepo(root);
  repo.now = new Date();
  tt.teardown(async () => {
    await repo.close();
    await rm(root, { recursive: true, force: true });
  });
  const paths = new HostPaths(root);
  if (opts.root !== false) {
    await mkdir(paths.host('/etc/vigil'), { recursive: true });
    await writeFile(paths.host(OTA_PATHS.trustedRoot), repo.rootBytes);
  }
  const data = paths.host('/var/lib/vigil/data');
  await mkdir(data, { recursive: true });
  return {
    root,
    paths,
    repo,
    slots: new HostAppSlots(paths.host(OTA_PATHS.slots), new DurableFs()),
    data,
  };
}

function config(repo: Repo | undefined) {
  return parseConfig({
    mode: 'development',
    ota: {
      channel: 'stable',
      pollMinutes: 60,
      ...(repo ? { repositoryUrl: repo.server.url } : {}),
    },
  });
}

/** A promise and the callback that settles it: tests wait for events, not for time. */
function signal<T = void>(): { promise: Promise<T>; fire: (v: T) => void } {
  let fire!: (v: T) => void;
  const promise = new Promise<T>((r) => (fire = r));
  return { promise, fire };
}

/** A DurableFs that holds chosen operations until the test lets them go on. */
class GatedFs extends DurableFs {
  readonly #gates = new Map<string, { entered: () => void; released: Promise<void> }>();

  /** Hold the next `op` on a file named `name`; resolves `entered` when it arrives. */
  hold(op: 'read' | 'write', name: string): { entered: Promise<void>; release: () => void } {
    const entered = signal();
    const released = signal();
    this.#gates.set(`${op} ${name}`, {
      entered: () => {
        entered.fire();
      },
      released: released.promise,
    });
    return {
      entered: entered.promise,
      release: () => {
        released.fire();
      },
    };
  }

  async #pass(op: 'read' | 'write', path: string): Promise<void> {
    const g = this.#gates.get(`${op} ${basename(path)}`);
    if (g === undefined) return;
    this.#gates.delete(`${op} ${basename(path)}`);
    g.entered();
    await g.released;
  }

  override async readIfExists(path: string): Promise<Buffer | undefined> {
    await this.#pass('read', path);
    return super.readIfExists(path);
  }

  override async writeFileAtomic(
    path: string,
    data: Uint8Array | string,
    label?: string,
  ): Promise<void> {
    await this.#pass('write', path);
    return super.writeFileAtomic(path, data, label);
  }
}

t.test('passes everything else through to the inner services', async (tt) => {
  const r = await rig(tt);
  const inner = new Inner();
  const svc = withOta(inner, {
    config: config(undefined),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: {},
    stop: () => undefined,
  });
  tt.equal((svc as unknown as Inner).extra(), 'extra 0', 'methods keep their private state');
  tt.equal((svc as unknown as { configChannel: unknown }).configChannel, undefined);
  tt.equal(await svc.isPaired('/x'), true);
  tt.equal(await svc.applyUpdate('9.9.9', new AbortController().signal), 'rolled-back');
  tt.same(inner.calls, ['apply'], 'no staged update: the inner services answer');
  tt.match(svc.status?.(), { mode: 'development', ota: { enabled: false, channel: 'stable' } });
  tt.equal(await treeVersion(), JSON.parse(await readFile('package.json', 'utf8')).version);
});

t.test('a staged update goes through update-staged / apply-update to a restart', async (tt) => {
  const r = await rig(tt);
  await publish(r.repo, r.root, '2.0.0');
  const inner = new Inner();
  const stops: number[] = [];
  const events: Event[] = [];
  const staged = signal();
  const log = new MemoryLogger('t');
  const svc = withOta(inner, {
    config: config(r.repo),
    paths: r.paths,
    logger: log,
    env: {},
    stop: (c) => stops.push(c),
    applyWaitMs: 600_000, // the state machine applies (below): no fallback restart here
  });
  const ac = new AbortController();
  await svc.startServices(
    r.data,
    ac.signal,
    (e) => {
      events.push(e);
      staged.fire();
    },
    undefined as never,
  );
  await staged.promise;
  tt.same(events, [{ type: 'update-staged', version: '2.0.0' }]);
  const st = await r.slots.status();
  tt.match(st.pointer, {
    committed: 'a',
    trial: { slot: 'b', version: '2.0.0', stage: 'pending', from: '0.1.0' },
  });
  tt.equal(st.markers.b?.version, '2.0.0', 'installed into the inactive slot first');
  const applyAc = new AbortController();
  const applied = svc.applyUpdate('2.0.0', applyAc.signal);
  tt.same(stops, [TRIAL_RESTART_EXIT], 'the hub stops to be restarted');
  applyAc.abort(); // what the stop does to the effect
  await tt.rejects(applied, /restarting into the update/);
  await svc.stopServices();
  tt.same(inner.calls, ['start', 'stop']);
  tt.ok(log.lines.some((l) => l.includes('restarting the hub into the new version')));
});

t.test('a state machine that never applies: the hub restarts anyway', async (tt) => {
  const r = await rig(tt);
  await publish(r.repo, r.root, '2.0.0');
  const stops: number[] = [];
  const stopped = signal();
  const svc = withOta(new Inner(), {
    config: config(r.repo),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: {},
    stop: (c) => {
      stops.push(c);
      stopped.fire();
    },
    applyWaitMs: 50, // the wait under test: nobody applies, however long it takes
  });
  await svc.startServices(
    r.data,
    new AbortController().signal,
    () => undefined,
    undefined as never,
  );
  await stopped.promise;
  tt.same(stops, [TRIAL_RESTART_EXIT]);
  await svc.stopServices();
});

async function launchedTrial(r: Rig): Promise<void> {
  // What the previous version and the launcher left: 2.0.0 in slot b, launched.
  for (const s of ['a', 'b'] as const) {
    await mkdir(r.slots.dirOf(s), { recursive: true });
    await r.slots.writeMarker(s, {
      format: 'vigil-slot/1',
      version: s === 'a' ? '1.0.0' : '2.0.0',
      target: 'stable/x.tar.gz',
      sha256: 'a'.repeat(64),
      treeDigest: 'b'.repeat(64),
      installedAt: '2026-11-20T00:00:00Z',
    });
  }
  await r.slots.beginTrial('b', '2.0.0', new Date(), { from: '1.0.0' });
  await r.slots.markLaunched();
}

t.test('trial start: healthy → commit and a kept outcome', async (tt) => {
  const r = await rig(tt);
  await launchedTrial(r);
  const stops: number[] = [];
  const inner = new Inner();
  // The phone is not reachable: the report is tried, fails, and the outcome is kept.
  const sent = signal<{ topic: string; report: OtaReport }>();
  inner.channel = {
    sendApp: (topic, body) => {
      const d = decodeOtaReport(body);
      if (!d.ok) return Promise.reject(new Error(d.reason));
      sent.fire({ topic, report: d.value });
      return Promise.reject(new Error('no phone reachable'));
    },
  };
  const svc = withOta(inner, {
    config: config(undefined),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: { [ENV_TRIAL]: '2.0.0' },
    stop: (c) => stops.push(c),
  });
  await svc.startServices(
    r.data,
    new AbortController().signal,
    () => undefined,
    undefined as never,
  );
  const { topic, report } = await sent.promise;
  tt.equal(topic, OTA_REPORT_TOPIC);
  tt.match(report.outcome, { kind: 'committed', version: '2.0.0', from: '1.0.0' });
  await svc.stopServices(); // waits for the trial's last write
  tt.match((await r.slots.status()).pointer, { committed: 'b', trial: undefined });
  const out = JSON.parse(await readFile(r.paths.host(`${OTA_PATHS.state}/outcome.json`), 'utf8'));
  tt.match(
    out,
    {
      delivered: false,
      outcome: { kind: 'committed', version: '2.0.0', from: '1.0.0' },
    },
    'kept until a phone gets it',
  );
  tt.same(stops, [], 'a healthy trial keeps running');
  tt.match(svc.status?.(), { ota: { trial: '2.0.0', last: { kind: 'committed' } } });
});

t.test('trial start: unhealthy → trial failed, exit for the committed slot', async (tt) => {
  const r = await rig(tt);
  await launchedTrial(r);
  const inner = new Inner();
  inner.paired = () => Promise.reject(new Error('MLS state corrupt'));
  const stops: number[] = [];
  const stopped = signal();
  const svc = withOta(inner, {
    config: config(undefined),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    // The check fails until this deadline ends it: long enough that a loaded machine
    // gets through the agent's setup and a first round of checks before it.
    env: { [ENV_TRIAL]: '2.0.0', [ENV_TRIAL_SECONDS]: '3' },
    stop: (c) => {
      stops.push(c);
      stopped.fire();
    },
  });
  await svc.startServices(
    r.data,
    new AbortController().signal,
    () => undefined,
    undefined as never,
  );
  await stopped.promise;
  tt.same(stops, [TRIAL_FAILED_EXIT]);
  tt.match((await r.slots.status()).pointer, {
    committed: 'a',
    trial: {
      stage: 'failed',
      reason: /health check failed: mls \(MLS state does not load: MLS state corrupt\)/,
    },
  });
  await svc.stopServices();
});

t.test('trial start that never reaches its services: the deadline fails it', async (tt) => {
  const r = await rig(tt);
  await launchedTrial(r);
  const stops: number[] = [];
  const stopped = signal();
  withOta(new Inner(), {
    config: config(undefined),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: { [ENV_TRIAL]: '2.0.0', [ENV_TRIAL_SECONDS]: '0.2' },
    stop: (c) => {
      stops.push(c);
      stopped.fire();
    },
  });
  await stopped.promise; // after the failed mark is written
  tt.same(stops, [TRIAL_FAILED_EXIT]);
  tt.match((await r.slots.status()).pointer.trial, {
    stage: 'failed',
    reason: 'the new version did not become healthy within 0.2 s of its start',
  });
});

t.test('no trusted root: updates disabled, said in the status', async (tt) => {
  const r = await rig(tt, { root: false });
  const svc = withOta(new Inner(), {
    config: config(r.repo),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: {},
    stop: () => undefined,
  });
  await svc.startServices(
    r.data,
    new AbortController().signal,
    () => undefined,
    undefined as never,
  );
  await svc.stopServices(); // waits for the loop, which ends at once without a root
  tt.match(svc.status?.(), {
    ota: {
      enabled: false,
      note: 'no trusted root (/etc/vigil/ota-root.json, nor ota-root.json in the provisioning bundle): updates disabled',
    },
  });
});

t.test(
  'a hub stopped during its trial gives no verdict (next start: committed slot)',
  async (tt) => {
    const r = await rig(tt);
    await launchedTrial(r);
    const inner = new Inner();
    const checking = signal();
    inner.paired = () => {
      checking.fire(); // the health check runs
      return Promise.resolve(false); // and keeps retrying
    };
    const stops: number[] = [];
    const svc = withOta(inner, {
      config: config(undefined),
      paths: r.paths,
      logger: new MemoryLogger('t'),
      env: { [ENV_TRIAL]: '2.0.0', [ENV_TRIAL_SECONDS]: '30' },
      stop: (c) => stops.push(c),
    });
    await svc.startServices(
      r.data,
      new AbortController().signal,
      () => undefined,
      undefined as never,
    );
    await checking.promise;
    await svc.stopServices(); // returns once the trial's loop has ended
    tt.same(stops, [], 'no exit code of its own: the hub was stopping anyway');
    tt.match((await r.slots.status()).pointer, { committed: 'a', trial: { stage: 'launched' } });
  },
);

t.test('a stop while the failed trial is being marked waits for the mark', async (tt) => {
  const r = await rig(tt);
  await launchedTrial(r);
  const fs = new GatedFs();
  const marking = fs.hold('write', 'current');
  const inner = new Inner();
  const stops: number[] = [];
  const svc = withOta(inner, {
    config: config(undefined),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: { [ENV_TRIAL]: '2.0.0', [ENV_TRIAL_SECONDS]: '0.2' },
    stop: (c) => stops.push(c),
    fs,
  });
  await marking.entered; // the deadline fired: the failed mark is on its way to disk
  const stopping = svc.stopServices();
  await new Promise((res) => setImmediate(res)); // every continuation that is ready has run
  tt.same(inner.calls, [], 'the services wait for the mark');
  marking.release();
  await stopping;
  tt.same(inner.calls, ['stop']);
  tt.same(stops, [TRIAL_FAILED_EXIT]);
  tt.match((await r.slots.status()).pointer.trial, { stage: 'failed' });
});

t.test('a trial past its deadline is never health-checked or committed', async (tt) => {
  // The deadline fires while the agent is still being set up and its failed mark is
  // being written; the health check must not run against it (it used to, and could
  // commit a trial the next start rolls back).
  const r = await rig(tt);
  await launchedTrial(r);
  const fs = new GatedFs();
  const setup = fs.hold('read', 'root.json'); // the agent's setup reads the trusted root
  const marking = fs.hold('write', 'current');
  const inner = new Inner();
  const checked = signal<string>();
  inner.paired = () => {
    checked.fire('the health check ran');
    return Promise.resolve(true);
  };
  const lines: string[] = [];
  const logger = new JsonLogger('t', {
    level: 'debug',
    write: (l) => {
      lines.push(l);
      if (l.includes('not confirming')) checked.fire('not confirming');
    },
  });
  const stops: number[] = [];
  const stopped = signal();
  const svc = withOta(inner, {
    config: config(undefined),
    paths: r.paths,
    logger,
    env: { [ENV_TRIAL]: '2.0.0', [ENV_TRIAL_SECONDS]: '0.2' },
    stop: (c) => {
      stops.push(c);
      stopped.fire();
    },
    fs,
  });
  await svc.startServices(
    r.data,
    new AbortController().signal,
    () => undefined,
    undefined as never,
  );
  await setup.entered;
  await marking.entered; // the deadline fired during the setup
  setup.release();
  tt.equal(await checked.promise, 'not confirming', 'the deadline verdict stands');
  marking.release();
  await stopped.promise;
  await svc.stopServices();
  tt.same(stops, [TRIAL_FAILED_EXIT]);
  tt.match((await r.slots.status()).pointer, { committed: 'a', trial: { stage: 'failed' } });
  tt.notOk(
    lines.some((l) => l.includes('the update loop failed')),
    'no error escapes the loop',
  );
});

t.test('repository, channel and trust root from the provisioning bundle', async (tt) => {
  const r = await rig(tt, { root: false });
  await publish(r.repo, r.root, '2.0.0');
  // what first boot moved into the volume: the bundle and its trust root
  const bundleDir = `${r.data}/provisioning`;
  await mkdir(bundleDir, { recursive: true });
  await writeFile(
    `${bundleDir}/${BUNDLE_FILE}`,
    encodeBundle({
      ...newIdentity(),
      batchId: 'b1',
      createdAt: new Date().toISOString(),
      ota: { repositoryUrl: r.repo.server.url, channel: 'stable' },
    }),
  );
  await writeFile(`${bundleDir}/${OTA_ROOT_FILE}`, r.repo.rootBytes);
  const staged = signal();
  const svc = withOta(new Inner(), {
    config: parseConfig({ mode: 'development', ota: { pollMinutes: 60 } }),
    paths: r.paths,
    logger: new MemoryLogger('t'),
    env: {},
    stop: () => undefined,
  });
  tt.match(svc.status?.(), {
    ota: { channel: 'stable', channelSource: 'default', repositoryUrl: null, lastContact: null },
  });
  await svc.startServices(
    r.data,
    new AbortController().signal,
    (e: Event) => {
      if (e.type === 'update-staged') staged.fire();
    },
    undefined as never,
  );
  await staged.promise;
  tt.match(svc.status?.(), {
    ota: {
      channel: 'stable',
      channelSource: 'bundle',
      repositoryUrl: r.repo.server.url.replace(/\/+$/, ''),
      repositorySource: 'bundle',
      lastContact: /^\d{4}-\d\d-\d\dT/,
    },
  });
  await svc.stopServices();
});
