import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  REQUIRED_TOOLS,
  findRepo,
  lockPasswords,
  missingTools,
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
