import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { autobootTxt, parseAutoboot, trialGuardFiles, TrybootSelector } from '../../ota/tryboot.js';
import { tempDir } from './helpers.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

t.test('autoboot.txt generation and parsing', async (tt) => {
  const a = autobootTxt('a');
  tt.equal(a, '[all]\ntryboot_a_b=1\nboot_partition=1\n[tryboot]\nboot_partition=2\n');
  tt.same(parseAutoboot(a), { normal: 1, tryboot: 2, abEnabled: true });
  tt.same(parseAutoboot(autobootTxt('b')), { normal: 2, tryboot: 1, abEnabled: true });
  tt.same(
    parseAutoboot(
      '# comment\r\n[all]\r\nboot_partition=2 # x\r\n[tryboot]\r\nboot_partition=3\r\n',
    ),
    { normal: 2, tryboot: 3, abEnabled: false },
  );
  tt.throws(() => parseAutoboot('[all]\nboot_partition=2\n'), /no \[all\] and \[tryboot\]/);
  tt.throws(
    () => parseAutoboot('[all]\nboot_partition=x\n[tryboot]\nboot_partition=3'),
    /bad boot_partition/,
  );
});

t.test('trial, commit and the one-shot flag', async (tt) => {
  const root = await tempDir();
  tt.teardown(() => rm(root, { recursive: true, force: true }));
  const selectorDir = join(root, 'boot', 'selector');
  const dt = join(root, 'proc', 'device-tree', 'chosen', 'bootloader');
  await mkdir(dt, { recursive: true });
  const reboots: (string | undefined)[] = [];
  const sel = new TrybootSelector({
    selectorDir,
    bootloaderDt: dt,
    fs: new DurableFs(),
    reboot: { reboot: async (arg) => void reboots.push(arg) },
  });
  await sel.install('a');
  // Normal boot of slot A (boot partition 1).
  await writeFile(join(dt, 'partition'), u32(1));
  await writeFile(join(dt, 'tryboot'), u32(0));
  tt.same(await sel.status(), { committed: 'a', running: 'a', trial: false });
  await tt.rejects(sel.commitRunning(), /not running a tryboot trial/);
  await sel.tryOther();
  tt.same(reboots, ['0 tryboot'], 'reboot "0 tryboot" asks the firmware for one trial boot');
  // The trial boot: partition 2, tryboot flag set by the bootloader.
  await writeFile(join(dt, 'partition'), u32(2));
  await writeFile(join(dt, 'tryboot'), u32(1));
  tt.same(await sel.status(), { committed: 'a', running: 'b', trial: true });
  tt.equal(await sel.commitRunning(), 'b');
  tt.equal(
    await readFile(join(selectorDir, 'autoboot.txt'), 'utf8'),
    autobootTxt('b'),
    'B is now boot_partition in [all]',
  );
  await writeFile(
    join(selectorDir, 'autoboot.txt'),
    '[all]\nboot_partition=1\n[tryboot]\nboot_partition=2\n',
  );
  await tt.rejects(sel.tryOther(), /does not enable tryboot_a_b/);
  await writeFile(join(dt, 'partition'), u32(9));
  await tt.rejects(sel.status(), /neither slot A nor B/);
});

t.test('trial guard files: watchdog and deadline', async (tt) => {
  const f = trialGuardFiles(300);
  tt.match(f['/etc/systemd/system.conf.d/vigil-watchdog.conf'] ?? '', /RuntimeWatchdogSec=15s/);
  tt.match(f['/etc/systemd/system/vigil-ota-trial-guard.timer'] ?? '', /OnBootSec=300s/);
  tt.match(f['/etc/systemd/system/vigil-ota-trial-guard.service'] ?? '', /vigil ota trial-guard/);
});
