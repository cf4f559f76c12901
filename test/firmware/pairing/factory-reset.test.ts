import t from 'tap';
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLogger } from '../../../base/logger.js';
import {
  FACTORY_RESET_MARKER,
  RELAY_REVOKE_MARKER,
  factoryReset,
  resumeFactoryReset,
  revokePendingRelayPhones,
} from '../../../firmware/pairing/factory-reset.js';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';

/** A data volume as a paired hub leaves it. */
async function volume(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'vigil-reset-'));
  const files: Record<string, string> = {
    'provisioning/device.json': '{"secret":"keep me"}',
    '.vigil/volume.json': '{}',
    '.vigil/recovery/recovery-key': 'rk',
    '.vigil/recovery/escrowed.json': '{}',
    'relay-account.json': '{"token":"d.x"}',
    'mls/hub.json': 'groups',
    'mls/phones/p1.json': 'phone',
    'home-wifi.json': '{"ssid":"HomeNet","passphrase":"pw"}',
    'uplink/queue.json': '[]',
    'clips/2026-01-01.mp4': 'video',
    'config/state.json': '{}',
  };
  for (const [f, body] of Object.entries(files)) {
    await mkdir(join(d, f, '..'), { recursive: true });
    await writeFile(join(d, f), body);
  }
  await mkdir(join(d, 'lost+found'));
  return d;
}

async function tree(d: string): Promise<string[]> {
  return (await readdir(d, { recursive: true })).map(String).sort();
}

void t.test('erases what pairing established, keeps the unit identity and volume', async (t) => {
  const d = await volume();
  const revoked: string[] = [];
  const logger = new MemoryLogger();
  const r = await factoryReset(
    {
      fs: new DurableFs(),
      logger,
      revokeRelayPhones: () => {
        revoked.push('all');
        return Promise.resolve(2);
      },
    },
    d,
    AbortSignal.timeout(5000),
  );
  t.same(r.erased, [
    'mls',
    'clips',
    'config',
    'home-wifi.json',
    'uplink',
    '.vigil/recovery/escrowed.json',
  ]);
  t.equal(r.relayPhonesRevoked, 2);
  t.same(revoked, ['all']);
  t.same(await tree(d), [
    '.vigil',
    '.vigil/recovery',
    '.vigil/recovery/recovery-key',
    '.vigil/volume.json',
    'lost+found',
    'provisioning',
    'provisioning/device.json',
    'relay-account.json',
  ]);
  t.notOk(logger.lines.join('\n').includes('pw'), 'no Wi-Fi passphrase in the log');
});

void t.test('relay unreachable: the revocation stays pending until it works', async (t) => {
  const d = await volume();
  let up = false;
  const deps = {
    fs: new DurableFs(),
    logger: new MemoryLogger(),
    revokeRelayPhones: () => (up ? Promise.resolve(1) : Promise.reject(new Error('ECONNREFUSED'))),
  };
  const r = await factoryReset(deps, d, AbortSignal.timeout(5000));
  t.equal(r.relayPhonesRevoked, 'pending');
  t.ok(existsSync(join(d, RELAY_REVOKE_MARKER)));
  t.equal(
    await revokePendingRelayPhones(
      { fs: deps.fs, logger: deps.logger },
      d,
      AbortSignal.timeout(1000),
    ),
    'pending',
  );
  up = true;
  t.equal(await revokePendingRelayPhones(deps, d, AbortSignal.timeout(1000)), 1);
  t.notOk(existsSync(join(d, RELAY_REVOKE_MARKER)));
  t.equal(await revokePendingRelayPhones(deps, d, AbortSignal.timeout(1000)), 'none');
});

void t.test('a reset killed at any point is finished at the next start', async (t) => {
  // count the crash points of one clean run, then crash at each of them
  const probe = new CrashController();
  await factoryReset(
    { fs: new DurableFs(probe), logger: new MemoryLogger() },
    await volume(),
    AbortSignal.timeout(5000),
  );
  const points = probe.count;
  t.ok(points > 5, `${points} crash points`);
  for (let at = 1; at <= points; at++) {
    const d = await volume();
    const crash = new CrashController({ at, mode: 'power-loss', delivery: 'throw' });
    await t.rejects(
      factoryReset(
        { fs: new DurableFs(crash), logger: new MemoryLogger() },
        d,
        AbortSignal.timeout(5000),
      ),
      SimulatedCrash,
    );
    const deps = { fs: new DurableFs(), logger: new MemoryLogger() };
    const pending = existsSync(join(d, FACTORY_RESET_MARKER));
    const resumed = await resumeFactoryReset(deps, d);
    t.equal(resumed, pending, `crash at ${at}: resumed iff the marker survived`);
    if (pending || resumed) {
      const left = await tree(d);
      t.notOk(left.includes('mls'), `crash at ${at}: MLS state gone`);
      t.notOk(left.includes('home-wifi.json'), `crash at ${at}: Wi-Fi gone`);
    } else {
      // crashed before the marker was durable (untouched) or after the reset completed
      const left = await tree(d);
      const untouched = left.includes('mls/hub.json');
      t.equal(left.includes('home-wifi.json'), untouched, `crash at ${at}: all or nothing`);
      t.equal(left.includes('clips'), untouched, `crash at ${at}: all or nothing (clips)`);
    }
    t.ok(existsSync(join(d, 'provisioning/device.json')), `crash at ${at}: identity kept`);
  }
  t.equal(
    await resumeFactoryReset(
      { fs: new DurableFs(), logger: new MemoryLogger() },
      await mkdtemp(join(tmpdir(), 'vigil-reset-empty-')),
    ),
    false,
  );
});
