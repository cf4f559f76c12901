// OS updates end to end on the host: a real TUF repository with `kind: rootfs` targets (checked
// by tuf-js too), the OS agent, and the project's RAUC bootloader backend on a simulated card.
// RAUC itself is simulated at its interface to the backend (what `rauc install` and
// `rauc status mark-good/bad` call: SimCard in ./helpers.ts); the real rauc's signature check
// is test/ota/rauc-bundle.test.ts.
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { Updater } from 'tuf-js';
import { DurableFs } from '../../hw/os/fs.js';
import type { HealthReport, OtaOutcome } from '../../ota/agent.js';
import { MemoryLogger } from '../../base/logger.js';
import { OsUpdateAgent } from '../../ota/os-agent.js';
import type { OsAgentOptions } from '../../ota/os-agent.js';
import { release } from '../../ota/repo.js';
import { FetchTransport } from '../../ota/transport.js';
import { healthy, makeDevice, makeRepo, osBundle, SimCard, tempDir } from './helpers.js';
import type { OsBehaviour, Repo } from './helpers.js';

interface Rig {
  work: string;
  /** Where the agents keep os-agent.json. */
  stateDir: string;
  logger: MemoryLogger;
  repo: Repo;
  card: SimCard;
  outcomes: OtaOutcome[];
  /** The agent of the currently booted slot (a new process after each boot). */
  agent(): OsUpdateAgent;
  publish(version: string, behaviour?: OsBehaviour): Promise<void>;
  committed(): Promise<string>;
}

type Place = Pick<OsAgentOptions, 'downloadDir' | 'freeBytes'> &
  Partial<Pick<OsAgentOptions, 'busy'>>;

async function rig(tt: Test, place: Place = {}): Promise<Rig> {
  const work = await tempDir('vigil-os-agent-');
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const repo = await makeRepo(work);
  tt.teardown(() => repo.close());
  repo.now = new Date(); // tuf-js checks expiry against the real clock
  const device = await makeDevice(work, repo);
  const card = await SimCard.create(join(work, 'boot-a'));
  const outcomes: OtaOutcome[] = [];
  const logger = new MemoryLogger('os-agent');
  const health = (): HealthReport =>
    card.running().behaviour === 'unhealthy'
      ? { ok: false, checks: { camera: { ok: false, detail: 'no frames' } } }
      : healthy();
  return {
    work,
    stateDir: device.stateDir,
    logger,
    repo,
    card,
    outcomes,
    agent: () =>
      new OsUpdateAgent({
        logger,
        stateDir: device.stateDir,
        fs: new DurableFs(),
        transport: new FetchTransport({ timeoutMs: 5000, idleMs: 5000 }),
        repoUrl: repo.server.url,
        channel: 'stable',
        rauc: card.rauc,
        boot: card.bootPort,
        health: { check: () => Promise.resolve(health()) },
        reporter: { report: (o) => void outcomes.push(o) },
        runningVersion: () => Promise.resolve(card.running().version),
        now: () => repo.now,
        busyPollMs: 10,
        busy: { isBusy: () => false },
        ...place,
      }),
    publish: async (version, behaviour = 'healthy') => {
      await release(repo.ctx, {
        bundle: osBundle(version, behaviour),
        channel: 'stable',
        version,
        kind: 'rootfs',
      });
    },
    committed: async () => card.slots[await card.committed()].version,
  };
}

/** One boot of the device: the firmware picks a slot, the new agent settles any trial. */
async function bootDevice(r: Rig): Promise<OtaOutcome | undefined> {
  await r.card.powerOn();
  return r.agent().confirm();
}

t.test(
  'v1 → v2 (committed) → v3 unhealthy (rolled back) → v4 hangs (watchdog: back)',
  async (tt) => {
    const r = await rig(tt);
    await r.publish('2.0.0');
    const first = await r.agent().check();
    tt.same(first, { kind: 'restarting', version: '2.0.0', from: '1.0.0' });
    tt.same(r.card.installs, ['2.0.0']);
    tt.equal(r.card.trybootFlag, true, 'rebooted with the one-shot tryboot flag');
    tt.equal(await r.committed(), '1.0.0', 'nothing committed before the trial');

    tt.same(await bootDevice(r), { kind: 'committed', version: '2.0.0', from: '1.0.0' });
    tt.equal(await r.committed(), '2.0.0');
    // a normal reboot boots v2 again
    await r.card.powerOn();
    tt.same(r.card.booted, { slot: 'b', tryboot: false });
    tt.equal(r.card.running().version, '2.0.0');
    tt.same(await r.agent().check(), { kind: 'up-to-date', version: '2.0.0' });

    await r.publish('3.0.0', 'unhealthy');
    tt.same(await r.agent().check(), { kind: 'restarting', version: '3.0.0', from: '2.0.0' });
    const v3 = await bootDevice(r);
    tt.match(v3, {
      kind: 'rolled-back',
      version: '3.0.0',
      to: '2.0.0',
      reason: /camera \(no frames\)/,
    });
    tt.equal(r.card.trybootFlag, false, 'the failed trial reboots plainly');
    await r.card.powerOn();
    tt.equal(r.card.running().version, '2.0.0', 'back on v2 without a person');
    tt.equal(await r.committed(), '2.0.0');
    tt.same(
      await r.agent().check(),
      { kind: 'up-to-date', version: '2.0.0' },
      'v3 is never retried',
    );

    await r.publish('4.0.0', 'hang');
    tt.same(await r.agent().check(), { kind: 'restarting', version: '4.0.0', from: '2.0.0' });
    await r.card.powerOn();
    tt.equal(r.card.running().version, '4.0.0', 'the trial boot runs v4');
    // v4 hangs: no agent gets to confirm; the watchdog resets the board (a reset, no flag)
    await r.card.powerOn();
    tt.equal(r.card.running().version, '2.0.0', 'the reset boots the committed slot');
    tt.match(await r.agent().confirm(), {
      kind: 'rolled-back',
      version: '4.0.0',
      to: '2.0.0',
      reason: /watchdog/,
    });
    tt.equal(await r.card.backend.handle(['get-primary']), 'B\n', 'no trial left pending');
    tt.same(await r.agent().check(), { kind: 'up-to-date', version: '2.0.0' });
    tt.same(r.card.installs, ['2.0.0', '3.0.0', '4.0.0']);
    tt.same(
      r.outcomes.map((o) => `${o.kind} ${'version' in o ? o.version : ''}`),
      ['committed 2.0.0', 'rolled-back 3.0.0', 'rolled-back 4.0.0'],
    );
  },
);

t.test('power cut during the install and during the trial', async (tt) => {
  const r = await rig(tt);
  await r.publish('2.0.0');
  // cut during `rauc install`: RAUC had marked B bad and half-written it, no trial recorded
  await r.card.backend.handle(['set-state', 'B', 'bad']);
  r.card.slots.b = { version: '2.0.0-torn', behaviour: 'hang' };
  await r.card.powerOn();
  tt.equal(r.card.running().version, '1.0.0', 'the committed slot boots');
  tt.equal(await r.agent().confirm(), undefined, 'nothing to settle');
  tt.same(await r.agent().check(), { kind: 'restarting', version: '2.0.0', from: '1.0.0' });
  // cut during the trial (before the health check answered): a reset without the flag
  await r.card.powerOn();
  tt.equal(r.card.running().version, '2.0.0');
  await r.card.powerOn();
  tt.equal(r.card.running().version, '1.0.0', 'power back: the committed slot');
  tt.match(await r.agent().confirm(), { kind: 'rolled-back', version: '2.0.0', to: '1.0.0' });
});

t.test('a state file emptied by a power cut does not stop OS updates', async (tt) => {
  const r = await rig(tt);
  await r.publish('2.0.0');
  tt.same(await r.agent().check(), { kind: 'restarting', version: '2.0.0', from: '1.0.0' });
  await bootDevice(r);
  tt.equal(await r.committed(), '2.0.0');
  // what fsck left of the boot FAT's file after a cut (the twin's CI run): zero bytes
  const file = join(r.stateDir, 'os-agent.json');
  await writeFile(file, '');
  await r.publish('3.0.0');
  tt.equal(await r.agent().confirm(), undefined, 'nothing to settle, no error');
  tt.same(await r.agent().check(), { kind: 'restarting', version: '3.0.0', from: '2.0.0' });
  tt.ok(
    r.logger.lines.some(
      (l) => l.includes('OS update state unreadable: starting afresh') && l.includes('"bytes":0'),
    ),
    'the damaged file is named in a warning',
  );
  await bootDevice(r);
  tt.equal(await r.committed(), '3.0.0', 'the next version installs and commits');
  tt.match(JSON.parse(await readFile(file, 'utf8')), { format: 'vigil-os-agent/1' }, 'rewritten');
});

t.test('a tampered bundle is refused by TUF before RAUC sees it', async (tt) => {
  const r = await rig(tt);
  await r.publish('2.0.0');
  // the server answers the bundle with other bytes of the same length
  const tampered = osBundle('2.0.0');
  tampered[tampered.length - 1] = 0x79;
  const name = (
    await r.repo.ctx.fs.readIfExists(join(r.repo.ctx.repoDir, 'metadata', '2.targets.json'))
  )?.toString();
  const sha = /"sha256":\s*"([0-9a-f]{64})"/.exec(name ?? '')?.[1] ?? '';
  r.repo.faults.replace.set(`/targets/stable/${sha}.vigil-rootfs-2.0.0.raucb`, tampered);
  const o = await r.agent().check();
  tt.match(o, { kind: 'refused', failure: 'hash' });
  tt.same(r.card.installs, [], 'RAUC never saw it');
  tt.ok(
    r.repo.faults.requests.some((p) => p.endsWith('.vigil-rootfs-2.0.0.raucb')),
    'the bundle was fetched (and refused)',
  );
});

t.test(
  'a bundle changed on disk while a recording runs is refused before RAUC sees it',
  async (tt) => {
    const dl = await tempDir('vigil-os-dl-');
    tt.teardown(() => rm(dl, { recursive: true, force: true }));
    let asked = 0;
    const r = await rig(tt, {
      downloadDir: () => dl,
      busy: {
        // the first look finds a recording: meanwhile the verified download is altered on disk
        isBusy: async () => {
          if (++asked > 1) return false;
          for (const f of await readdir(dl)) {
            const p = join(dl, f);
            const bytes = await readFile(p);
            bytes[0] = (bytes[0] ?? 0) ^ 0xff;
            await writeFile(p, bytes);
          }
          return true;
        },
      },
    });
    await r.publish('2.0.0');
    const o = await r.agent().check();
    tt.match(o, { kind: 'refused', failure: 'hash', reason: /changed on disk/ });
    tt.same(r.card.installs, [], 'RAUC never saw it');
    tt.same(await readdir(dl), [], 'the altered file is removed');
    tt.equal(asked, 2, 'checked again after the wait');
  },
);

t.test('a bundle RAUC refuses (CMS signature) is reported and not retried', async (tt) => {
  const r = await rig(tt);
  await r.publish('2.0.0', 'bad-signature');
  tt.match(await r.agent().check(), {
    kind: 'refused',
    failure: 'signature',
    reason: /signature verification failed/,
  });
  tt.same(await r.agent().check(), { kind: 'up-to-date', version: '1.0.0' });
  tt.equal(await r.committed(), '1.0.0');
});

t.test('tuf-js verifies the repository with a rootfs target and downloads it', async (tt) => {
  const r = await rig(tt);
  await r.publish('2.0.0');
  const clientDir = join(r.card.dir, '..', 'tufjs');
  await mkdir(join(clientDir, 'targets'), { recursive: true });
  await copyFile(join(r.repo.ctx.repoDir, 'metadata', '1.root.json'), join(clientDir, 'root.json'));
  const updater = new Updater({
    metadataDir: clientDir,
    metadataBaseUrl: `${r.repo.server.url}/metadata`,
    targetBaseUrl: `${r.repo.server.url}/targets`,
    targetDir: join(clientDir, 'targets'),
  });
  await updater.refresh();
  const info = await updater.getTargetInfo('stable/vigil-rootfs-2.0.0.raucb');
  if (info === undefined) throw new Error('tuf-js found no rootfs target');
  tt.same(info.custom, { vigil: { version: '2.0.0', channel: 'stable', kind: 'rootfs' } });
  const path = await updater.downloadTarget(info, join(clientDir, 'targets', 'os.raucb'));
  tt.same(await readFile(path), osBundle('2.0.0'), 'tuf-js downloaded the exact bundle');
});

/** The rootfs target's path on the server for `version` (its consistent-snapshot name). */
async function bundlePath(r: Rig, version: string): Promise<string> {
  const dir = join(r.repo.ctx.repoDir, 'metadata');
  const latest = (await readdir(dir))
    .map((n) => /^(\d+)\.targets\.json$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => b - a)[0];
  const meta = JSON.parse(await readFile(join(dir, `${String(latest)}.targets.json`), 'utf8')) as {
    signed: { targets: Record<string, { hashes: { sha256: string } }> };
  };
  const target = meta.signed.targets[`stable/vigil-rootfs-${version}.raucb`];
  if (target === undefined) throw new Error(`no target for ${version}`);
  return `/targets/stable/${target.hashes.sha256}.vigil-rootfs-${version}.raucb`;
}

t.test(
  'the bundle downloads to the data volume, resumes a cut transfer, and nothing stays after the install',
  async (tt) => {
    const volume: { mounted?: string } = {};
    const r = await rig(tt, { downloadDir: () => volume.mounted });
    await r.publish('2.0.0');
    tt.match(
      await r.agent().check(),
      { kind: 'failed', version: '1.0.0', reason: /waits: the data volume .* is not mounted/ },
      'locked data volume: the update waits',
    );
    tt.same(r.card.installs, []);
    const data = join(r.work, 'data', 'ota-os');
    volume.mounted = data;
    await mkdir(data, { recursive: true });
    // an older candidate's half download: not this target's, removed
    await writeFile(join(data, `${'0'.repeat(64)}.raucb.part`), 'stale');
    const path = await bundlePath(r, '2.0.0');
    r.repo.faults.truncateOnce.set(path, 1000);
    tt.match(await r.agent().check(), { kind: 'failed', reason: /interrupted|ended at/ });
    const half = await readdir(data);
    tt.same(half.length, 1, 'only the interrupted download is left');
    tt.match(half[0], /^[0-9a-f]{64}\.raucb\.part$/);
    tt.equal((await stat(join(data, half[0] ?? ''))).size, 1000);
    tt.same(await r.agent().check(), { kind: 'restarting', version: '2.0.0', from: '1.0.0' });
    const tries = r.repo.faults.requests.flatMap((p, i) =>
      p === path ? [r.repo.faults.ranges[i]] : [],
    );
    tt.same(tries, ['', 'bytes=1000-'], 'the second check resumed at byte 1000');
    tt.same(r.card.installs, ['2.0.0']);
    tt.same(await readdir(data), [], 'the bundle is removed after the install');
    tt.same(
      await readdir(join(r.work, 'device', 'var', 'lib', 'vigil', 'ota')).then((n) =>
        n.includes('downloads'),
      ),
      false,
      'nothing downloaded to the root filesystem',
    );
  },
);

t.test(
  'a bundle that does not fit is not downloaded: one clear line, the half removed',
  async (tt) => {
    let free = 10 * 2 ** 20;
    const data = await tempDir('vigil-os-data-');
    tt.teardown(() => rm(data, { recursive: true, force: true }));
    const r = await rig(tt, { downloadDir: () => data, freeBytes: () => Promise.resolve(free) });
    await r.publish('2.0.0');
    const path = await bundlePath(r, '2.0.0');
    // a transfer cut earlier left a half; now the volume is full (recordings)
    r.repo.faults.truncateOnce.set(path, 1000);
    free = 2 ** 30;
    tt.match(await r.agent().check(), { kind: 'failed' });
    tt.equal((await readdir(data)).length, 1, 'the half download');
    free = 10 * 2 ** 20;
    const o = await r.agent().check();
    tt.match(o, {
      kind: 'failed',
      version: '1.0.0',
      reason: /^OS update 2\.0\.0 \(1 MiB\) does not fit in .*: 10 MiB free, 65 MiB needed$/,
    });
    tt.notOk('reason' in o && o.reason.includes('\n'), 'one line');
    tt.same(await readdir(data), [], 'the half download is removed');
    tt.equal(
      r.repo.faults.requests.filter((p) => p === path).length,
      1,
      'no transfer without room',
    );
    free = 2 ** 30;
    tt.same(await r.agent().check(), { kind: 'restarting', version: '2.0.0', from: '1.0.0' });
    tt.same(r.card.installs, ['2.0.0']);
  },
);

t.test('a refused download leaves nothing behind', async (tt) => {
  const data = await tempDir('vigil-os-data-');
  tt.teardown(() => rm(data, { recursive: true, force: true }));
  const r = await rig(tt, { downloadDir: () => data });
  await r.publish('2.0.0');
  const tampered = osBundle('2.0.0');
  tampered[tampered.length - 1] = 0x79;
  r.repo.faults.replace.set(await bundlePath(r, '2.0.0'), tampered);
  tt.match(await r.agent().check(), { kind: 'refused', failure: 'hash' });
  tt.same(await readdir(data), []);
  tt.same(r.card.installs, []);
});
