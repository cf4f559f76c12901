// `vigil hub` as a real process under a real sd_notify socket: READY=1,
// periodic WATCHDOG=1, a crash-looping child ending in `degraded`, and a clean
// SIGTERM that takes its children down. Bad config exits non-zero naming the field.
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { sleep } from '../../firmware/supervisor/executor.js';
import { run, spawnProcess } from '../../hw/os/run.js';
import { NotifyListener } from '../../hw/os/sd-notify.js';

const VIGIL = ['--import', 'tsx', join(import.meta.dirname, '..', '..', 'bin', 'vigil.ts')];

async function setup(config: unknown): Promise<{ root: string; configPath: string }> {
  const root = await mkdtemp(join(tmpdir(), 'vigil-hub-'));
  const configPath = join(root, 'config.json');
  await writeFile(configPath, JSON.stringify(config));
  return { root, configPath };
}

t.test('hub lifecycle under a notify listener', async (t) => {
  const { root, configPath } = await setup({
    mode: 'development',
    storage: { dataDir: '/var/lib/vigil/data' },
    restart: { initialDelayMs: 20, maxDelayMs: 100, crashLoopCount: 3, crashLoopWindowMs: 60000 },
    children: [
      { name: 'sleeper', command: 'sleep', args: ['300'] },
      { name: 'crasher', command: 'sh', args: ['-c', 'exit 7'] },
    ],
  });
  // already paired: the hub goes straight to running and starts its children
  await mkdir(join(root, 'var/lib/vigil/data'), { recursive: true });
  await writeFile(join(root, 'var/lib/vigil/data/paired.json'), '{}');
  const sock = join(root, 'notify.sock');
  const listener = new NotifyListener(sock);
  t.teardown(() => {
    listener.close();
  });
  const hub = spawnProcess(
    process.execPath,
    [...VIGIL, 'hub', '--config', configPath, '--root', root],
    {
      env: { ...process.env, NOTIFY_SOCKET: sock, WATCHDOG_USEC: '400000' },
      stdout: 'pipe',
      stderr: 'pipe',
    },
  );
  let out = '';
  hub.child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  hub.child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  t.teardown(() => hub.stop(500));

  const ready = await listener.waitFor((m) => m.READY === '1', 60_000);
  t.equal(ready.MAINPID, String(hub.pid), 'READY=1 names the main pid');
  const ping = await listener.waitFor((m) => m.WATCHDOG === '1', 120_000);
  await listener.waitFor((m) => m.WATCHDOG === '1' && m !== ping, 120_000);
  const pings = listener.messages.filter((m) => m.WATCHDOG === '1').length;
  t.ok(pings >= 2, `periodic WATCHDOG=1 (${pings} so far)`);
  const degraded = await listener.waitFor((m) => (m.STATUS ?? '').startsWith('degraded'), 120_000);
  t.match(degraded.STATUS, /child "crasher" is in a crash loop/);

  type Status = {
    state: string;
    children: { name: string; state: string; pid?: number; restarts: number }[];
  };
  // the status file follows the notification (written asynchronously): poll it
  let status: Status = { state: 'unknown', children: [] };
  const until = Date.now() + 120_000;
  while (status.state !== 'degraded' && Date.now() < until) {
    await sleep(100);
    status = JSON.parse(await readFile(join(root, 'run/vigil/status.json'), 'utf8')) as Status;
  }
  t.equal(status.state, 'degraded', 'status file reports degraded');
  const crasher = status.children.find((c) => c.name === 'crasher');
  const sleeper = status.children.find((c) => c.name === 'sleeper');
  t.equal(crasher?.state, 'crash-loop');
  t.equal(crasher?.restarts, 2, 'restarted with backoff before giving up');
  t.equal(sleeper?.state, 'running', 'healthy children keep running');
  const sleeperPid = sleeper?.pid ?? 0;
  t.ok(sleeperPid > 0);

  const cli = await run(process.execPath, [...VIGIL, 'hub', 'status', '--root', root, '--json']);
  t.match(cli.stdout.toString(), /"state": "degraded"/, '`vigil hub status` reads it');

  process.kill(hub.pid ?? 0, 'SIGTERM');
  const exit = await hub.exited;
  t.equal(exit.exitCode, 0, 'clean exit on SIGTERM');
  t.throws(() => process.kill(sleeperPid, 0), 'the child is gone too');
  t.ok(
    listener.messages.some((m) => m.STOPPING === '1'),
    'STOPPING=1 sent',
  );
  t.match(out, /"msg":"hub stopped"/);
  t.notMatch(out, /"level":"error".*hub stopped/);
});

t.test('bad configuration: non-zero exit and a message naming the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ camera: { fps: 'fast' } }, /field "camera\.fps"/],
    [{ relay: { url: 'https://r.example', colour: 1 } }, /unknown field "relay\.colour"/],
    [{ mode: 'debug' }, /field "mode"/],
  ];
  for (const [cfg, msg] of cases) {
    const { root, configPath } = await setup(cfg);
    const err = await run(process.execPath, [
      ...VIGIL,
      'hub',
      '--config',
      configPath,
      '--root',
      root,
    ]).catch((e: unknown) => e);
    t.match(err, { exitCode: 1 });
    t.match((err as { stderr: string }).stderr, msg);
    t.equal((err as { stderr: string }).stderr.trim().split('\n').length, 1, 'one line');
  }
  const missing = await run(process.execPath, [
    ...VIGIL,
    'hub',
    '--config',
    '/nonexistent/vigil.json',
  ]).catch((e: unknown) => e);
  t.match(missing, { exitCode: 1, stderr: /config file not found: \/nonexistent\/vigil.json/ });
});

t.test('CLI basics: --version, --help, unknown command, bad option', async (t) => {
  const v = await run(process.execPath, [...VIGIL, '--version']);
  t.match(v.stdout.toString(), /^\d+\.\d+\.\d+\n$/);
  const h = await run(process.execPath, [...VIGIL, '--help']);
  t.match(h.stdout.toString(), /Commands:\n\s+hub/);
  const hh = await run(process.execPath, [...VIGIL, 'hub', '--help']);
  t.match(hh.stdout.toString(), /Usage: vigil hub/);
  const u = await run(process.execPath, [...VIGIL, 'frobnicate']).catch((e: unknown) => e);
  t.match(u, { exitCode: 2, stderr: /unknown command "frobnicate"/ });
  const b = await run(process.execPath, [...VIGIL, 'hub', '--bogus']).catch((e: unknown) => e);
  t.match(b, {
    exitCode: 2,
    stderr: /^vigil hub: unknown option --bogus \(see vigil hub --help\)\n$/,
  });
});

t.test('production hub without a data partition waits locked and says why', async (t) => {
  const { root, configPath } = await setup({ storage: { keySources: ['dev-keyfile'] } });
  const sock = join(root, 'notify.sock');
  const listener = new NotifyListener(sock);
  t.teardown(() => {
    listener.close();
  });
  const hub = spawnProcess(
    process.execPath,
    [...VIGIL, 'hub', '--config', configPath, '--root', root],
    {
      env: { ...process.env, NOTIFY_SOCKET: sock },
      stdout: 'pipe',
      stderr: 'pipe',
    },
  );
  t.teardown(() => hub.stop(500));
  const locked = await listener.waitFor((m) => (m.STATUS ?? '').includes('no-device'), 60_000);
  t.match(locked.STATUS, /^locked: no-device: no data partition found/);
  await sleep(500);
  t.equal(hub.child.exitCode, null, 'still running, waiting for a disk or a key');
  process.kill(hub.pid ?? 0, 'SIGTERM');
  t.equal((await hub.exited).exitCode, 0);
});
