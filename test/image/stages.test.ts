import t from 'tap';
import { StageError, StageRunner, formatSeconds } from '../../image/stages.js';

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let at = 1000;
  return {
    now: () => at,
    advance: (ms) => {
      at += ms;
    },
  };
}

t.test('each stage prints its start and its elapsed time', async (t) => {
  const lines: string[] = [];
  const clock = fakeClock();
  const s = new StageRunner({ print: (l) => lines.push(l), total: 2, clock, heartbeatMs: 0 });
  const v = await s.stage('rootfs', 'mmdebstrap', async () => {
    clock.advance(125_000);
    return 42;
  });
  t.equal(v, 42);
  await s.stage('assemble', 'dd', async () => {
    clock.advance(1500);
  });
  t.same(lines, [
    '==> [1/2] rootfs: mmdebstrap',
    '    [1/2] rootfs: done in 2m05s (total 2m05s)',
    '==> [2/2] assemble: dd',
    '    [2/2] assemble: done in 1.5s (total 2m07s)',
  ]);
  t.same(s.timings, [
    { name: 'rootfs', seconds: 125 },
    { name: 'assemble', seconds: 1.5 },
  ]);
  t.equal(s.summary(), 'rootfs 2m05s, assemble 1.5s; total 2m07s');
});

t.test('a failure names the failing stage', async (t) => {
  const lines: string[] = [];
  const s = new StageRunner({
    print: (l) => lines.push(l),
    total: 3,
    clock: fakeClock(),
    heartbeatMs: 0,
  });
  const err = await s
    .stage('filesystems', 'mkfs', async () => {
      throw new Error('mkfs.ext4 exited with code 1');
    })
    .catch((e: unknown) => e);
  t.ok(err instanceof StageError);
  t.equal((err as StageError).stage, 'filesystems');
  t.equal((err as StageError).code, 'ESTAGE');
  t.match((err as Error).message, /stage "filesystems" failed: mkfs.ext4 exited with code 1/);
  t.match(lines[1], /^!!! \[1\/3\] filesystems: FAILED after 0\.0s: mkfs.ext4/);
  // an inner StageError is passed through, not wrapped twice
  const inner = new StageError('rootfs', new Error('x'));
  const again = await s.stage('outer', 'y', () => Promise.reject(inner)).catch((e: unknown) => e);
  t.equal(again, inner);
});

t.test('a long stage prints a heartbeat', async (t) => {
  const lines: string[] = [];
  const s = new StageRunner({ print: (l) => lines.push(l), total: 1, heartbeatMs: 20 });
  await s.stage('rootfs', 'slow', () => new Promise((r) => setTimeout(r, 90)));
  t.ok(lines.some((l) => /rootfs: still running/.test(l)));
});

t.test('formatSeconds', async (t) => {
  t.equal(formatSeconds(5.25), '5.3s');
  t.equal(formatSeconds(60), '1m00s');
  t.equal(formatSeconds(1501), '25m01s');
});
