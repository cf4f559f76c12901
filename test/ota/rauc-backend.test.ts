import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import {
  boardBackend,
  decodeBackendState,
  parseTwinCmdline,
  PiFirmware,
  RaucBootBackend,
  STATE_FILE,
  TRYBOOT_FLAG_FILE,
  TwinFirmware,
} from '../../ota/rauc-backend.js';
import { autobootTxt, parseAutoboot } from '../../protocol/card-layout.js';
import { tempDir } from './helpers.js';

interface Rig {
  dir: string;
  backend: RaucBootBackend;
  boot(partition: number, tryboot: boolean): void;
  reboots: boolean[];
  committedPartition(): Promise<number>;
}

async function rig(tt: Test): Promise<Rig> {
  const dir = await tempDir('vigil-rauc-backend-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'autoboot.txt'), autobootTxt('a'));
  let booted = { partition: 1, tryboot: false };
  const reboots: boolean[] = [];
  const backend = new RaucBootBackend({
    selectorDir: dir,
    fs: new DurableFs(),
    firmware: {
      booted: () => Promise.resolve(booted),
      reboot: (tb) => {
        reboots.push(tb);
        return Promise.resolve();
      },
    },
  });
  return {
    dir,
    backend,
    reboots,
    boot: (partition, tryboot) => {
      booted = { partition, tryboot };
    },
    committedPartition: async () =>
      parseAutoboot(await readFile(join(dir, 'autoboot.txt'), 'utf8')).normal,
  };
}

t.test('an install whose trial fails: the committed slot stays, no commit', async (tt) => {
  const r = await rig(tt);
  tt.equal(await r.backend.handle(['get-primary']), 'A\n');
  tt.equal(await r.backend.handle(['get-state', 'B']), 'good\n');
  await r.backend.handle(['set-state', 'B', 'bad']); // RAUC, before writing slot B
  tt.equal(await r.backend.handle(['get-state', 'B']), 'bad\n');
  await r.backend.handle(['set-primary', 'B']); // RAUC, after writing it
  tt.equal(await r.backend.handle(['get-state', 'B']), 'good\n', 'set-primary clears bad');
  tt.equal(await r.backend.handle(['get-primary']), 'B\n');
  tt.equal(await r.backend.rebootIntoPrimary(), 'b');
  tt.same(r.reboots, [true]);
  r.boot(2, true);
  tt.equal(await r.backend.handle(['get-current']), 'B\n');
  await r.backend.handle(['set-state', 'B', 'bad']); // the agent: health check failed
  tt.equal(await r.backend.handle(['get-primary']), 'A\n', 'the trial is dropped');
  tt.equal(await r.committedPartition(), 1, 'autoboot.txt untouched');
  tt.equal(await r.backend.rebootIntoPrimary(), 'a');
  tt.same(r.reboots, [true, false], 'a plain reboot: the firmware boots A');
});

t.test('mark-good commits only a slot booted through tryboot', async (tt) => {
  const r = await rig(tt);
  await r.backend.handle(['set-primary', 'B']);
  // a plain boot of A (the trial never happened: watchdog reset or power cut before it)
  await r.backend.handle(['set-state', 'B', 'good']);
  tt.equal(await r.committedPartition(), 1, 'B was never booted: nothing committed');
  await r.backend.handle(['set-state', 'A', 'good']);
  tt.equal(await r.committedPartition(), 1);
  // booted B without the tryboot flag (cannot happen on a Pi; a hand-edited card): no commit
  r.boot(2, false);
  await r.backend.handle(['set-state', 'B', 'good']);
  tt.equal(await r.committedPartition(), 1);
  r.boot(2, true);
  await r.backend.handle(['set-state', 'B', 'good']);
  tt.equal(await r.committedPartition(), 2, 'the trial boot commits');
  tt.equal(await r.backend.handle(['get-primary']), 'B\n');
  tt.same(JSON.parse(await readFile(join(r.dir, STATE_FILE), 'utf8')), {
    format: 'vigil-ab/1',
    bad: [],
  });
  // the next update goes the other way: [tryboot] now names A
  await r.backend.handle(['set-primary', 'A']);
  tt.equal(await r.backend.rebootIntoPrimary(), 'a');
  tt.same(parseAutoboot(await readFile(join(r.dir, 'autoboot.txt'), 'utf8')).tryboot, 1);
});

t.test('a power cut between the commit and the state write', async (tt) => {
  const r = await rig(tt);
  // autoboot.txt already names B, the state still records the trial of B
  await writeFile(join(r.dir, 'autoboot.txt'), autobootTxt('b'));
  await writeFile(join(r.dir, STATE_FILE), '{"format":"vigil-ab/1","trial":"b","bad":[]}\n');
  tt.equal(await r.backend.pendingTrial(), undefined, 'a trial of the committed slot is none');
  tt.equal(await r.backend.handle(['get-primary']), 'B\n');
  await r.backend.rebootIntoPrimary();
  tt.same(r.reboots, [false]);
});

t.test('a torn state file loses only the pending trial', async (tt) => {
  const r = await rig(tt);
  await writeFile(join(r.dir, STATE_FILE), '{"format":"vigil-ab/1","tri');
  tt.equal(await r.backend.handle(['get-primary']), 'A\n');
  tt.equal(await r.backend.handle(['get-state', 'B']), 'good\n');
});

t.test('the state decoder: the shape or nothing', async (tt) => {
  tt.same(decodeBackendState('{"format":"vigil-ab/1","trial":"b","bad":["a"]}'), {
    format: 'vigil-ab/1',
    trial: 'b',
    bad: ['a'],
  });
  tt.same(
    decodeBackendState('{"format":"vigil-ab/1","extra":1}'),
    { format: 'vigil-ab/1', bad: [] },
    'bad defaults to none; unknown keys are ignored',
  );
  for (const text of [
    '{"format":"vigil-ab/1","tri',
    'null',
    '[]',
    '"vigil-ab/1"',
    '{"format":"vigil-ab/2","bad":[]}',
    '{"bad":[]}',
    '{"format":"vigil-ab/1","trial":"c","bad":[]}',
    '{"format":"vigil-ab/1","trial":null,"bad":[]}',
    '{"format":"vigil-ab/1","bad":"a"}',
    '{"format":"vigil-ab/1","bad":["a","x"]}',
  ])
    tt.equal(decodeBackendState(text), undefined, text);
});

t.test(
  'boardBackend: the Pi firmware when the device tree names the partition, else the twin',
  async (tt) => {
    const root = await tempDir('vigil-rauc-board-');
    tt.teardown(() => rm(root, { recursive: true, force: true }));
    const fw = join(root, 'boot', 'firmware');
    await mkdir(fw, { recursive: true });
    await writeFile(join(fw, 'autoboot.txt'), autobootTxt('a'));
    await mkdir(join(root, 'proc'), { recursive: true });
    await writeFile(
      join(root, 'proc', 'cmdline'),
      'root=x vigil.boot_partition=2 vigil.tryboot=1\n',
    );
    const fs = new DurableFs();
    tt.same(
      await (await boardBackend(new HostPaths(root), fs)).booted(),
      { slot: 'b', trial: true },
      'twin',
    );
    const dt = join(root, 'proc', 'device-tree', 'chosen', 'bootloader');
    await mkdir(dt, { recursive: true });
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    await writeFile(join(dt, 'partition'), u32(1));
    await writeFile(join(dt, 'tryboot'), u32(0));
    tt.same(
      await (await boardBackend(new HostPaths(root), fs)).booted(),
      { slot: 'a', trial: false },
      'Pi',
    );
  },
);

t.test('bad arguments get one-line reasons', async (tt) => {
  const r = await rig(tt);
  await tt.rejects(r.backend.handle(['get-primary', 'x']), /get-primary takes 0 argument/);
  await tt.rejects(r.backend.handle(['set-primary', 'C']), /unknown boot name "C"/);
  await tt.rejects(r.backend.handle(['set-state', 'A', 'meh']), /state must be good or bad/);
  await tt.rejects(r.backend.handle(['frobnicate']), /unknown command "frobnicate"/);
  r.boot(3, false);
  await tt.rejects(r.backend.handle(['get-current']), /partition 3 is neither slot A nor B/);
  await rm(join(r.dir, 'autoboot.txt'));
  await tt.rejects(r.backend.handle(['get-primary']), /cannot read .*autoboot\.txt/);
});

t.test('the twin: firmware facts on the command line, the flag on the FAT', async (tt) => {
  tt.same(parseTwinCmdline('console=ttyS0 vigil.boot_partition=2 vigil.tryboot=1 quiet'), {
    partition: 2,
    tryboot: true,
  });
  tt.same(parseTwinCmdline('vigil.boot_partition=1'), { partition: 1, tryboot: false });
  tt.equal(parseTwinCmdline('root=/dev/vda5'), undefined);
  const dir = await tempDir('vigil-twin-fw-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'cmdline'), 'root=x vigil.boot_partition=1 vigil.tryboot=0\n');
  let rebooted = 0;
  const fw = new TwinFirmware(join(dir, 'cmdline'), dir, new DurableFs(), () => {
    rebooted++;
    return Promise.resolve();
  });
  tt.same(await fw.booted(), { partition: 1, tryboot: false });
  await fw.reboot(false);
  await tt.rejects(readFile(join(dir, TRYBOOT_FLAG_FILE)), { code: 'ENOENT' });
  await fw.reboot(true);
  tt.equal(await readFile(join(dir, TRYBOOT_FLAG_FILE), 'utf8'), '1\n');
  tt.equal(rebooted, 2);
});

t.test('Pi 3 / Zero 2 W: the backend refuses to make a trial primary', async (tt) => {
  const dir = await tempDir('vigil-rauc-pi3-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const dt = join(dir, 'proc', 'device-tree');
  await mkdir(join(dt, 'chosen', 'bootloader'), { recursive: true });
  await writeFile(join(dt, 'model'), 'Raspberry Pi Zero 2 W Rev 1.0\0');
  await writeFile(join(dir, 'autoboot.txt'), autobootTxt('a'));
  const fw = new PiFirmware(join(dt, 'chosen', 'bootloader'), new DurableFs());
  const backend = new RaucBootBackend({ selectorDir: dir, fs: new DurableFs(), firmware: fw });
  await tt.rejects(backend.handle(['set-primary', 'B']), /Zero 2 W.*ignores autoboot\.txt/);
  tt.equal(await backend.handle(['get-primary']), 'A\n', 'nothing recorded');
  await backend.handle(['set-primary', 'A']);
  await writeFile(join(dt, 'model'), 'Raspberry Pi 4 Model B Rev 1.4\0');
  await backend.handle(['set-primary', 'B']);
  tt.equal(await backend.handle(['get-primary']), 'B\n', 'a Pi 4 switches');
});
