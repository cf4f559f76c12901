// OTA restart path under a real power cut: a real `vigil hub` (development mode, relay and
// TUF repository on loopback) started through the real launcher (dist/ota/launch.js) stages
// 2.0.0 and exits 75 to be restarted; the launcher marks the trial "launched" (durably) and
// starts 2.0.0 — and the guest loses power before the new version has confirmed its health.
// Boot 2: the launcher must run the committed 1.0.0 (one start per trial, like tryboot), and
// 1.0.0's agent reports the interrupted trial as rolled back (one attempt counted).
// @timeout 600
// @boots 2
// @disk data 256M
// @memory 2048
// @kill-at 1 ota-trial-launched
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SILENT } from '../../../base/logger.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { run, spawnProcess } from '../../../hw/os/run.js';
import { buildAppBundle } from '../../../ota/bundle.js';
import { initRepo, release } from '../../../ota/repo.js';
import type { RepoContext } from '../../../ota/repo.js';
import { HostAppSlots } from '../../../ota/slots.js';
import { startStaticServer } from '../../../ota/static-server.js';
import { startRelay } from '../../../relay/server.js';
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
const ROOT = join(MNT, 'device');
const SLOTS = join(ROOT, 'opt/vigil');
const STATE = join(ROOT, 'var/lib/vigil/ota');
const CONFIG = join(ROOT, 'etc/vigil/config.json');
const RELAY_PORT = 18080;
const REPO_PORT = 18081;

const sh = async (cmd: string, args: string[]): Promise<void> => {
  await run(cmd, args, { timeoutMs: 120_000 });
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A release whose entry is the project's real CLI; 2.0.0 starts slowly (30 s). */
async function hubTree(dir: string, version: string, delayMs: number): Promise<void> {
  await mkdir(join(dir, 'dist', 'bin'), { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'vigil', version, type: 'module' }),
  );
  await writeFile(
    join(dir, 'dist', 'bin', 'vigil.js'),
    `await new Promise((r) => setTimeout(r, ${String(delayMs)}));\nawait import('/vigil/dist/bin/vigil.js');\n`,
  );
}

function startHub(tag: string) {
  const p = spawnProcess(
    'node',
    [
      '/vigil/dist/ota/launch.js',
      '--slots',
      SLOTS,
      '--',
      'hub',
      '--config',
      CONFIG,
      '--root',
      ROOT,
    ],
    {
      env: { PATH: process.env.PATH, HOME: '/root', VIGIL_OTA_TRIAL_SECONDS: '300' },
      stdout: 'pipe',
      stderr: 'pipe',
    },
  );
  const out = { text: '' };
  const onData = (d: Buffer): void => {
    out.text += d.toString();
    for (const line of d.toString().split('\n'))
      if (line.includes('vigil.launch') || line.includes('"vigil.ota"')) log(`${tag}: ${line}`);
  };
  p.child.stdout?.on('data', onData);
  p.child.stderr?.on('data', onData);
  return { p, out };
}

async function pointer(): Promise<{ committed: string; trial?: { stage?: string } }> {
  return JSON.parse(await readFile(join(SLOTS, 'current'), 'utf8')) as {
    committed: string;
    trial?: { stage?: string };
  };
}

function launchLine(text: string): { slot: string; version: string | null; trial: boolean } {
  const line = text.split('\n').find((l) => l.includes('"vigil.launch"'));
  check(line !== undefined, 'no launcher line');
  return JSON.parse(line) as { slot: string; version: string | null; trial: boolean };
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
  const relay = await startRelay({
    dataDir: '/tmp/relay',
    host: '127.0.0.1',
    port: RELAY_PORT,
    logger: SILENT,
  });
  const ctx: RepoContext = {
    repoDir: join(MNT, 'repo'),
    keysDir: join(MNT, 'keys'),
    fs: new DurableFs(),
  };

  if (boot === 1) {
    await initRepo(ctx);
    const server = await startStaticServer(ctx.repoDir, { host: '127.0.0.1', port: REPO_PORT });
    for (const [v, delay] of [
      ['1.0.0', 0],
      ['2.0.0', 30_000],
    ] as const) {
      await hubTree(join(MNT, `app-${v}`), v, delay);
      await buildAppBundle({
        appDir: join(MNT, `app-${v}`),
        out: join(MNT, `${v}.tar.gz`),
        fs: ctx.fs,
      });
    }
    const fs = new DurableFs();
    await release(ctx, {
      bundle: await readFile(join(MNT, '1.0.0.tar.gz')),
      channel: 'stable',
      version: '1.0.0',
      kind: 'app',
    });
    const slots = new HostAppSlots(SLOTS, fs);
    const digest = await slots.unpack('a', join(MNT, '1.0.0.tar.gz'));
    const { createHash } = await import('node:crypto');
    await slots.writeMarker('a', {
      format: 'vigil-slot/1',
      version: '1.0.0',
      target: 'stable/vigil-app-1.0.0.tar.gz',
      sha256: createHash('sha256')
        .update(await readFile(join(MNT, '1.0.0.tar.gz')))
        .digest('hex'),
      treeDigest: digest,
      installedAt: new Date().toISOString(),
    });
    await release(ctx, {
      bundle: await readFile(join(MNT, '2.0.0.tar.gz')),
      channel: 'stable',
      version: '2.0.0',
      kind: 'app',
    });
    await mkdir(join(ROOT, 'var/lib/vigil/data'), { recursive: true });
    await writeFile(join(ROOT, 'var/lib/vigil/data/paired.json'), '{}');
    await mkdir(join(ROOT, 'etc/vigil'), { recursive: true });
    await writeFile(
      join(ROOT, 'etc/vigil/ota-root.json'),
      await readFile(join(ctx.repoDir, 'metadata', '1.root.json')),
    );
    await writeFile(
      CONFIG,
      JSON.stringify({
        mode: 'development',
        relay: { url: `http://127.0.0.1:${String(RELAY_PORT)}` },
        ota: { channel: 'stable', repositoryUrl: server.url, pollMinutes: 60 },
      }),
    );
    await sh('sync', []);

    // The running 1.0.0 finds 2.0.0, installs it and exits to be restarted.
    const first = startHub('hub 1.0.0');
    const e1 = await Promise.race([first.p.exited, sleep(400_000).then(() => undefined)]);
    check(e1 !== undefined, `1.0.0 did not stage the update:\n${first.out.text.slice(-3000)}`);
    check(e1.exitCode === 75, `1.0.0 exited ${String(e1.exitCode)}, expected 75`);
    check((await pointer()).trial?.stage === 'pending', 'no pending trial after the stage');
    // The restart: the launcher starts the trial once; cut the power before it confirms.
    const second = startHub('trial start');
    const deadline = Date.now() + 60_000;
    // (the launcher writes the mark, then logs its line, then loads 2.0.0: wait for both)
    while (
      (await pointer()).trial?.stage !== 'launched' ||
      !second.out.text.includes('"vigil.launch"')
    ) {
      check(Date.now() < deadline, `the launcher did not launch the trial:\n${second.out.text}`);
      await sleep(50);
    }
    check(launchLine(second.out.text).trial, 'the second start is the trial start');
    log('trial launched (2.0.0 still starting); cutting the power');
    await cutHere('ota-trial-launched');
  }

  // Boot 2: the launcher must run the committed 1.0.0, whose agent reports the rollback.
  const server = await startStaticServer(ctx.repoDir, { host: '127.0.0.1', port: REPO_PORT });
  const hub = startHub('after the cut');
  const deadline = Date.now() + 400_000;
  let outcome: { outcome?: { kind?: string; version?: string; reason?: string } } = {};
  for (;;) {
    try {
      outcome = JSON.parse(await readFile(join(STATE, 'outcome.json'), 'utf8')) as typeof outcome;
    } catch {
      /* not yet */
    }
    if (outcome.outcome?.kind === 'rolled-back') break;
    check(Date.now() < deadline, `no rollback reported:\n${hub.out.text.slice(-3000)}`);
    await sleep(250);
  }
  const l = launchLine(hub.out.text);
  check(l.slot === 'a' && l.version === '1.0.0' && !l.trial, `launched ${JSON.stringify(l)}`);
  check(outcome.outcome.version === '2.0.0', `outcome ${JSON.stringify(outcome)}`);
  check(
    /did not confirm its health/.test(outcome.outcome.reason ?? ''),
    `reason: ${outcome.outcome.reason ?? ''}`,
  );
  const p = await pointer();
  check(p.committed === 'a' && p.trial === undefined, `pointer ${JSON.stringify(p)}`);
  const agent = JSON.parse(await readFile(join(STATE, 'agent.json'), 'utf8')) as {
    attempts: Record<string, number>;
  };
  check(agent.attempts['2.0.0'] === 1, `attempts ${JSON.stringify(agent.attempts)}`);
  await hub.p.stop(5000);
  const line = `PASS power cut during the trial start of 2.0.0: next start ran 1.0.0 (slot a), rolled back and reported (attempt 1)\n`;
  process.stdout.write(line);
  await writeFile(join(outDir(), 'ota-trial-power-cut.txt'), line);
  await server.close();
  await relay.close();
  await sh('umount', [MNT]);
});
