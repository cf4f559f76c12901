// The Hub shell around the state machine: a clean stop releases the services and then what
// outlives them (services.shutdown), so nothing keeps the process alive after `run` returns.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parseConfig } from '../../../firmware/config/config.js';
import { MemoryLogger } from '../../../base/logger.js';
import { Hub } from '../../../firmware/supervisor/hub.js';
import type { HubServices } from '../../../firmware/supervisor/hub.js';
import { NOOP_NOTIFIER } from '../../../hw/os/sd-notify.js';

t.test('a clean stop: services stop, then shutdown releases the rest', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-hub-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const calls: string[] = [];
  const services: HubServices = {
    unlockStorage: () => Promise.resolve({ ok: true, dataDir: dir }),
    isPaired: () => Promise.resolve(true),
    startPairing: () => Promise.resolve(),
    stopPairing: () => {
      calls.push('stop-pairing');
      return Promise.resolve();
    },
    startServices: () => {
      calls.push('start-services');
      return Promise.resolve();
    },
    stopServices: () => {
      calls.push('stop-services');
      return Promise.resolve();
    },
    shutdown: async () => {
      await new Promise((r) => setTimeout(r, 20));
      calls.push('shutdown');
    },
    applyUpdate: () => Promise.resolve('rolled-back'),
  };
  const hub = new Hub({
    config: parseConfig({
      mode: 'development',
      storage: { dataDir: dir, keySources: ['dev-keyfile'] },
    }),
    logger: new MemoryLogger('hub'),
    notifier: NOOP_NOTIFIER,
    services,
    statusFile: join(dir, 'run', 'status.json'),
  });
  const running = hub.run();
  for (let i = 0; i < 200 && hub.executor.state.name !== 'running'; i++)
    await new Promise((r) => setTimeout(r, 10));
  t.equal(hub.executor.state.name, 'running');
  hub.stop(0);
  t.equal(await running, 0, 'exit code 0');
  t.same(calls.slice(0, 1), ['start-services']);
  t.equal(calls.at(-1), 'shutdown', 'shutdown runs last, after the services stopped');
  t.ok(calls.includes('stop-services'));
  const status = await readFile(join(dir, 'run', 'status.json'), 'utf8');
  t.match(status, /stopping/, 'the last status says stopping');
});

t.test('the status file is rewritten while nothing changes state (last contacts)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-hub-status-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let contact: string | null = null;
  const services: HubServices = {
    unlockStorage: () => Promise.resolve({ ok: true, dataDir: dir }),
    isPaired: () => Promise.resolve(true),
    startPairing: () => Promise.resolve(),
    stopPairing: () => Promise.resolve(),
    startServices: () => Promise.resolve(),
    stopServices: () => Promise.resolve(),
    applyUpdate: () => Promise.resolve('rolled-back'),
    status: () => ({ relay: { url: 'https://relay.example', lastContact: contact } }),
  };
  const file = join(dir, 'run', 'status.json');
  const hub = new Hub({
    config: parseConfig({
      mode: 'development',
      storage: { dataDir: dir, keySources: ['dev-keyfile'] },
    }),
    logger: new MemoryLogger('hub'),
    notifier: NOOP_NOTIFIER,
    services,
    statusFile: file,
    statusRefreshMs: 20,
  });
  const running = hub.run();
  const read = async () =>
    JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as {
      state?: string;
      services?: { relay?: { lastContact: string | null } };
    };
  while ((await read()).state !== 'running') await new Promise((r) => setTimeout(r, 10));
  contact = '2026-12-06T10:00:00.000Z'; // the relay answered; no state change follows
  while ((await read()).services?.relay?.lastContact !== contact)
    await new Promise((r) => setTimeout(r, 10));
  t.match(await read(), { state: 'running', services: { relay: { lastContact: contact } } });
  hub.stop(0);
  t.equal(await running, 0);
});
