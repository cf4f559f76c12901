// OS updates inside the hub: the OTA wiring (withOta) runs the OS agent next to the app
// agent — a real TUF repository over HTTP with a `rootfs` target, the project's RAUC backend
// on a simulated boot FAT, RAUC simulated at its interface (SimCard in test/ota/helpers.ts:
// install marks the target bad, writes it, makes it primary), the hub's own health check for
// the trial boot.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import t from 'tap';
import type { Test } from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { HubOsUpdates, osUpdatesOff, OS_PATHS } from '../../bin/hub-os.js';
import type { HubOsDeps } from '../../bin/hub-os.js';
import { OTA_PATHS, withOta } from '../../bin/hub-ota.js';
import type { OtaHubServices } from '../../bin/hub-ota.js';
import { osLine } from '../../bin/hub.js';
import { parseConfig } from '../../firmware/config/config.js';
import type { HubServices } from '../../firmware/supervisor/hub.js';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import type { OtaOutcome } from '../../ota/agent.js';
import { release } from '../../ota/repo.js';
import { FetchTransport } from '../../ota/transport.js';
import { FIRMWARE_MOUNT } from '../../protocol/card-layout.js';
import { OS_VERSION_FILE, RAUC_PATHS } from '../../protocol/rauc-system.js';
import { makeRepo, osBundle, SimCard, tempDir } from '../ota/helpers.js';
import type { Repo } from '../ota/helpers.js';

function later<T = void>(): { promise: Promise<T>; fire: (v: T) => void } {
  let fire!: (v: T) => void;
  const promise = new Promise<T>((r) => (fire = r));
  return { promise, fire };
}

interface Rig {
  root: string;
  paths: HostPaths;
  repo: Repo;
  card: SimCard;
  data: string;
  /** What the running root says about itself (each slot's /etc/vigil/os-version). */
  setRunning(): Promise<void>;
}

async function rig(tt: Test): Promise<Rig> {
  const root = await tempDir('vigil-hub-os-');
  const repo = await makeRepo(root);
  repo.now = new Date();
  tt.teardown(async () => {
    await repo.close();
    await rm(root, { recursive: true, force: true });
  });
  const paths = new HostPaths(root);
  await mkdir(paths.host('/etc/vigil'), { recursive: true });
  await writeFile(paths.host(OTA_PATHS.trustedRoot), repo.rootBytes);
  const card = await SimCard.create(paths.host(FIRMWARE_MOUNT));
  const data = paths.host('/var/lib/vigil/data');
  await mkdir(data, { recursive: true });
  const r: Rig = {
    root,
    paths,
    repo,
    card,
    data,
    setRunning: () => writeFile(paths.host(OS_VERSION_FILE), `${card.running().version}\n`),
  };
  await r.setRunning();
  return r;
}

async function publishOs(repo: Repo, version: string): Promise<void> {
  await release(repo.ctx, {
    bundle: osBundle(version),
    channel: 'stable',
    version,
    kind: 'rootfs',
  });
}

/** The rest of the hub: storage, pairing and a media status the test controls. */
class Inner implements HubServices {
  recording = false;
  readonly sent: string[] = [];
  /** Called when someone asks whether a clip is being recorded while one is. */
  onBusyAsked: () => void = () => undefined;
  readonly committed = later();
  unlockStorage() {
    return Promise.resolve({ ok: true as const, dataDir: '/data' });
  }
  isPaired() {
    return Promise.resolve(true);
  }
  startPairing() {
    return Promise.resolve();
  }
  stopPairing() {
    return Promise.resolve();
  }
  startServices() {
    return Promise.resolve();
  }
  stopServices() {
    return Promise.resolve();
  }
  applyUpdate() {
    return Promise.resolve('rolled-back' as const);
  }
  status() {
    if (this.recording) this.onBusyAsked();
    return { media: { state: 'running', recording: { active: this.recording } } };
  }
  get configChannel() {
    return {
      sendApp: (topic: string, body: Uint8Array) => {
        const text = `${topic} ${Buffer.from(body).toString('utf8')}`;
        this.sent.push(text);
        if (text.includes('"committed"')) this.committed.fire();
        return Promise.resolve();
      },
    };
  }
}

function hubWith(r: Rig, inner: Inner): OtaHubServices {
  return withOta(inner, {
    config: parseConfig({
      mode: 'development',
      ota: { repositoryUrl: r.repo.server.url, pollMinutes: 600, os: { pollMinutes: 600 } },
    }),
    paths: r.paths,
    logger: new MemoryLogger(),
    env: { VIGIL_OTA_TRIAL_SECONDS: '20' },
    stop: () => undefined,
    os: { rauc: r.card.rauc, boot: r.card.bootPort, busyPollMs: 5, trialTimeoutMs: 20_000 },
  });
}

t.test('off: not an A/B image, or switched off in the config', async (tt) => {
  const r = await rig(tt);
  const fs = new DurableFs();
  tt.equal(
    await osUpdatesOff(parseConfig({}), r.paths, fs, false),
    `OS updates off: no ${RAUC_PATHS.systemConf} (not an A/B image)`,
  );
  await mkdir(r.paths.host('/etc/rauc'), { recursive: true });
  await writeFile(r.paths.host(RAUC_PATHS.systemConf), '[system]\n');
  tt.equal(await osUpdatesOff(parseConfig({}), r.paths, fs, false), undefined);
  tt.equal(
    await osUpdatesOff(parseConfig({ ota: { os: { enabled: false } } }), r.paths, fs, true),
    'OS updates off (ota.os.enabled is false)',
  );
  // the hub's status says why
  const hub = withOta(new Inner(), {
    config: parseConfig({ mode: 'development', ota: { os: { enabled: false } } }),
    paths: r.paths,
    logger: new MemoryLogger(),
    env: {},
    stop: () => undefined,
  });
  const ctrl = new AbortController();
  await hub.startServices(r.data, ctrl.signal, () => undefined, undefined as never);
  await hub.stopServices();
  tt.match(hub.ota.status().os, { enabled: false, version: '1.0.0' });
  tt.equal(
    osLine({ ota: hub.ota.status() }),
    '1.0.0, updates off (ota.os.enabled is false)',
    'vigil hub status: the OS line',
  );
});

t.test(
  'the hub installs v2 from the channel, reboots into the trial when idle, commits it healthy',
  async (tt) => {
    const r = await rig(tt);
    await publishOs(r.repo, '2.0.0');
    const inner = new Inner();
    // a clip starts while RAUC writes the slot: the reboot waits until it ends
    let askedWhileRecording = 0;
    r.card.onInstall = () => {
      inner.recording = true;
    };
    inner.onBusyAsked = () => {
      if (++askedWhileRecording === 3) inner.recording = false;
    };
    const hub = hubWith(r, inner);
    const ctrl = new AbortController();
    await hub.startServices(r.data, ctrl.signal, () => undefined, undefined as never);
    tt.equal(await r.card.firstReboot, 'trial', 'rebooted once through tryboot');
    tt.equal(askedWhileRecording, 3, 'not before the recording ended');
    tt.same(r.card.installs, ['2.0.0']);
    tt.equal(inner.recording, false, 'the reboot came after the recording ended');
    ctrl.abort();
    await hub.stopServices();
    tt.same(
      JSON.parse(await readFile(r.paths.host(OS_PATHS.trial), 'utf8')).pending,
      { version: '2.0.0', from: '1.0.0' },
      'the trial record on the boot FAT',
    );

    // the trial boot: slot B, the new hub confirms with its own health check
    await r.card.powerOn();
    tt.same(r.card.booted, { slot: 'b', tryboot: true });
    await r.setRunning();
    const inner2 = new Inner();
    const hub2 = hubWith(r, inner2);
    const ctrl2 = new AbortController();
    await hub2.startServices(r.data, ctrl2.signal, () => undefined, undefined as never);
    await inner2.committed.promise;
    ctrl2.abort();
    await hub2.stopServices();
    tt.same(r.card.marks, ['good booted']);
    tt.equal(await r.card.committed(), 'b', 'autoboot.txt: B committed');
    tt.match(hub2.ota.status().os, { enabled: true, version: '2.0.0' });
    tt.ok(
      inner2.sent.some((s) => s.includes('"committed"') && s.includes('2.0.0')),
      'the phone hears of the commit',
    );
    // a normal reboot boots v2 again
    await r.card.powerOn();
    tt.same(r.card.booted, { slot: 'b', tryboot: false });
  },
);

t.test('a trial boot whose hub is unhealthy goes back to v1 without a person', async (tt) => {
  const r = await rig(tt);
  await publishOs(r.repo, '3.0.0');
  const hub = hubWith(r, new Inner());
  const ctrl = new AbortController();
  await hub.startServices(r.data, ctrl.signal, () => undefined, undefined as never);
  tt.equal(await r.card.firstReboot, 'trial');
  ctrl.abort();
  await hub.stopServices();
  await r.card.powerOn();
  await r.setRunning();
  const outcomes: OtaOutcome[] = [];
  const os = new HubOsUpdates(osDeps(r, outcomes, false));
  tt.ok(await os.setup());
  const o = await os.confirm();
  tt.match(o, { kind: 'rolled-back', version: '3.0.0', to: '1.0.0' });
  tt.same(r.card.marks, ['bad booted']);
  tt.equal(r.card.trybootFlag, false, 'a plain reboot');
  await r.card.powerOn();
  tt.same(r.card.booted, { slot: 'a', tryboot: false }, 'v1 boots');
  await r.setRunning();
  // v3 is never installed again
  const again = new HubOsUpdates(osDeps(r, outcomes, true));
  tt.ok(await again.setup());
  tt.match(await again.check(), { kind: 'up-to-date', version: '1.0.0' });
  tt.same(r.card.installs, ['3.0.0']);
});

function osDeps(r: Rig, outcomes: OtaOutcome[], healthy: boolean): HubOsDeps {
  return {
    config: parseConfig({ ota: { os: { pollMinutes: 600 } } }),
    paths: r.paths,
    logger: new MemoryLogger(),
    fs: new DurableFs(),
    transport: new FetchTransport({ timeoutMs: 5000, idleMs: 5000 }),
    repoUrl: r.repo.server.url,
    channel: 'stable',
    trustedRoot: () => Promise.resolve(r.repo.rootBytes),
    health: {
      check: () =>
        Promise.resolve(
          healthy
            ? { ok: true, checks: {} }
            : { ok: false, checks: { camera: { ok: false, detail: 'no frames' } } },
        ),
    },
    busy: { isBusy: () => false },
    reporter: { report: (o) => void outcomes.push(o) },
    rauc: r.card.rauc,
    boot: r.card.bootPort,
  };
}

t.test('vigil hub status: the OS line', async (tt) => {
  tt.equal(osLine({}), undefined, 'an older hub without OS updates');
  tt.equal(
    osLine({
      ota: {
        os: {
          version: '2.0.0',
          enabled: true,
          last: { kind: 'rolled-back', version: '3.0.0', to: '2.0.0' },
        },
      },
    }),
    '2.0.0, updates on; last rolled-back 3.0.0',
  );
  tt.equal(
    osLine({
      ota: {
        os: {
          version: '0.0.0',
          enabled: false,
          note: 'OS updates off: no /etc/rauc/system.conf (not an A/B image)',
        },
      },
    }),
    '0.0.0, updates off (no /etc/rauc/system.conf (not an A/B image))',
  );
});
