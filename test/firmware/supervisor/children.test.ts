import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import { ChildSupervisor } from '../../../firmware/supervisor/children.js';
import { sleep } from '../../../firmware/supervisor/executor.js';

const POLICY = {
  initialDelayMs: 20,
  maxDelayMs: 100,
  crashLoopCount: 4,
  crashLoopWindowMs: 60_000,
};

async function until(pred: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await sleep(20);
  }
}

t.test('a crashing child is restarted with backoff, then declared a crash loop', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-child-'));
  const runs = join(dir, 'runs');
  const loops: string[] = [];
  const log = new MemoryLogger();
  const sup = new ChildSupervisor(POLICY, log, { onCrashLoop: (n) => loops.push(n) });
  sup.start({ name: 'crasher', command: 'sh', args: ['-c', `echo run >> ${runs}; exit 3`] });
  await until(() => loops.length > 0);
  t.same(loops, ['crasher']);
  const st = sup.status()[0];
  t.equal(st?.state, 'crash-loop');
  t.equal(st?.restarts, POLICY.crashLoopCount - 1);
  t.same(st?.lastExit, { code: 3, signal: null });
  await sleep(300);
  t.equal(
    (await readFile(runs, 'utf8')).trim().split('\n').length,
    POLICY.crashLoopCount,
    'not restarted after the loop verdict',
  );
  t.ok(
    log.lines.some((l) => l.includes('"restartInMs"')),
    'restarts are logged with their delay',
  );
  t.ok(sup.retry('crasher'), 'a crash-looping child can be retried by hand');
  t.notOk(sup.retry('unknown'));
  await sup.stopAll(500);
});

t.test('stopAll stops children and their process groups quickly', async (t) => {
  const sup = new ChildSupervisor(POLICY, new MemoryLogger());
  sup.start({ name: 'sleeper', command: 'sh', args: ['-c', 'sleep 60 & wait'] });
  sup.start({ name: 'sleeper', command: 'sh', args: ['-c', 'exit 0'] });
  await until(() => sup.status()[0]?.state === 'running');
  const pid = sup.status()[0]?.pid;
  t.ok(pid);
  await sup.stopAll(2000);
  t.equal(sup.status()[0]?.state, 'stopped');
  t.throws(() => process.kill(pid ?? 0, 0), 'the child is gone');
  await sup.stop('nope');
});
