// bin/rauc-backend.ts as RAUC runs it (RAUC_PATHS.backend): its own process, argv = RAUC's
// command, the answer on stdout; a refused command is one line on stderr and exit code 1.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { CommandError, run } from '../../hw/os/run.js';
import { STATE_FILE } from '../../ota/rauc-backend.js';
import { autobootTxt } from '../../protocol/card-layout.js';
import { tempDir } from '../ota/helpers.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const tsx = join(repo, 'node_modules', '.bin', 'tsx');
const entry = join(repo, 'bin', 'rauc-backend.ts');

t.test('the backend process answers RAUC on a host root with the twin firmware', async (tt) => {
  const root = await tempDir('vigil-rauc-backend-bin-');
  tt.teardown(() => rm(root, { recursive: true, force: true }));
  const fw = join(root, 'boot', 'firmware');
  await mkdir(fw, { recursive: true });
  await mkdir(join(root, 'proc'), { recursive: true });
  await writeFile(join(fw, 'autoboot.txt'), autobootTxt('a'));
  await writeFile(join(root, 'proc', 'cmdline'), 'root=x vigil.boot_partition=1 vigil.tryboot=0\n');
  const call = async (...argv: string[]) =>
    (
      await run(tsx, [entry, ...argv], { env: { VIGIL_ROOT: root }, timeoutMs: 120_000 })
    ).stdout.toString();
  tt.equal(await call('get-current'), 'A\n');
  tt.equal(await call('get-primary'), 'A\n');
  await call('set-state', 'B', 'bad');
  await call('set-primary', 'B');
  tt.equal(await call('get-primary'), 'B\n', 'the pending trial is primary');
  tt.match(JSON.parse(await readFile(join(fw, STATE_FILE), 'utf8')), { trial: 'b' });
  const refused = await run(tsx, [entry, 'set-state', 'C', 'good'], {
    env: { VIGIL_ROOT: root },
    timeoutMs: 120_000,
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  tt.ok(refused instanceof CommandError, 'a bad boot name fails');
  if (refused instanceof CommandError) {
    tt.equal(refused.exitCode, 1);
    tt.match(refused.stderr, /^vigil rauc backend: unknown boot name "C" \(known: A, B\)\n$/);
  }
  tt.equal(await call('get-primary'), 'B\n', 'the refused call changed nothing');
});
