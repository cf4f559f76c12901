// The qemu harness that boots the twin (test/system/lib/qemu.ts), without a guest: where its
// QMP socket goes and what a qemu that never starts reports. CI's checkout is deep
// (/check/work/main/...): a socket beside the console log there passed sun_path's 108 bytes
// and qemu exited at once, which the twin story saw only as a boot with no console output.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { bootQemu, qemuArgs, qmpSocket, UNIX_PATH_MAX } from '../system/lib/qemu.js';
import { tempDir } from './helpers.js';

const deep = (root: string) =>
  join(
    root,
    'check',
    'work',
    'main',
    'test',
    'system',
    '.cache',
    'runs',
    '2026-12-07T11-00-08-597Z-18389',
    'ota-os-ab-twin',
  );

const spec = (consoleLog: string) => ({
  kernel: 'k',
  append: '',
  disks: [],
  timeoutMs: 1,
  consoleLog,
  qmpEvents: true,
});

t.test('the QMP socket path fits sun_path however deep the run directory is', async (tt) => {
  const runDir = deep('/x'.repeat(60));
  const a = qmpSocket(spec(join(runDir, 'boot-1.console.log')));
  const b = qmpSocket(spec(join(runDir, 'boot-2.console.log')));
  tt.ok(a.length <= UNIX_PATH_MAX, `${a} fits`);
  tt.not(a, b, 'one socket per boot');
  tt.ok(
    qemuArgs(spec(join(runDir, 'boot-1.console.log'))).includes(`unix:${a},server=on,wait=off`),
  );
});

t.test('a qemu that cannot start: its own error, from a deep run directory', async (tt) => {
  const dir = await tempDir('vigil-twin-qemu-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const runDir = deep(dir);
  await mkdir(runDir, { recursive: true });
  const consoleLog = join(runDir, 'boot-1.console.log');
  tt.ok(`${consoleLog}.qmp`.length > UNIX_PATH_MAX, 'the old socket path would not fit');
  await tt.rejects(
    bootQemu({
      kernel: join(dir, 'no-such-vmlinuz'),
      append: 'console=ttyS0',
      disks: [],
      timeoutMs: 10 * 60_000,
      consoleLog,
      qmpEvents: true,
    }),
    {
      message:
        /^qemu exited with code 1 before the guest printed anything: .*could not open kernel file/,
    },
  );
});
