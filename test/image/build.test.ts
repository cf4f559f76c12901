import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BOARDS } from '../../image/boards.js';
import {
  REQUIRED_TOOLS,
  findRepo,
  fakeHwclockData,
  lockPasswords,
  missingTools,
  piDeviceTrees,
  sha256File,
} from '../../image/build.js';

t.test('lockPasswords: empty password fields become locked, others untouched', async (t) => {
  const shadow = 'root::19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nvigil:!:19000::::::\n';
  const r = lockPasswords(shadow);
  t.same(r.unlocked, ['root']);
  t.equal(r.text, 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nvigil:!:19000::::::\n');
  t.same(lockPasswords(r.text).unlocked, [], 'idempotent');
});

t.test('the tools the build needs are all here (CI installs them)', async (t) => {
  t.same(await missingTools(), [], `missing: ${REQUIRED_TOOLS.join(' ')}`);
  t.same(await missingTools(['definitely-not-a-tool-xyz']), ['definitely-not-a-tool-xyz']);
});

t.test('sha256File and findRepo', async (t) => {
  const d = t.testdir();
  await writeFile(join(d, 'f'), 'abc');
  t.equal(
    await sha256File(join(d, 'f')),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
  const repo = await findRepo();
  t.ok(repo.endsWith('/main') || repo.length > 1);
  await t.rejects(findRepo('/'), /cannot find the Vigil source tree/);
});

t.test('piDeviceTrees: every Pi generation the image supports, nothing else', async (t) => {
  // the broadcom/ directory of Debian's 6.1 arm64 kernel
  const ls = [
    'bcm2711-rpi-4-b.dtb',
    'bcm2711-rpi-400.dtb',
    'bcm2711-rpi-cm4-io.dtb',
    'bcm2837-rpi-3-a-plus.dtb',
    'bcm2837-rpi-3-b-plus.dtb',
    'bcm2837-rpi-3-b.dtb',
    'bcm2837-rpi-cm3-io3.dtb',
    'bcm2837-rpi-zero-2-w.dtb',
    'bcm4908-asus-gt-ac5300.dtb',
    'bcm94908.dtb',
    'stingray',
  ];
  const got = piDeviceTrees(ls);
  for (const d of BOARDS['rpi-arm64'].requiredDtbs) t.ok(got.includes(basename(d)), d);
  t.equal(got.length, 8);
});

t.test('fake-hwclock starts at SOURCE_DATE_EPOCH, not at the build time', async (t) => {
  t.equal(fakeHwclockData(1795403234), '2026-11-23 03:07:14\n');
});
