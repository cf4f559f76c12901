/**
 * The `vigil ota` command end to end, in-process: init-repo → bundle → release
 * → check on a device (real probe of the new slot) → refresh → rotate-keys,
 * plus probe and the usage errors.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { UsageError } from '../../base/command.js';
import { command } from '../../ota/cli.js';
import { startStaticServer } from '../../ota/static-server.js';
import { makeAppTree, tempDir, vigilOta as vigil } from './helpers.js';

t.test('release side and device side through the CLI', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const repo = join(work, 'repo');
  const keys = join(work, 'keys');
  const pass = join(work, 'pass.txt');
  await writeFile(pass, 'a passphrase for the root key\n');
  const init = await vigil([
    'init-repo',
    '--repo',
    repo,
    '--keys',
    keys,
    '--passphrase-file',
    pass,
  ]);
  tt.equal(init.code, 0, init.err);
  tt.match(init.out, /trusted root for devices: .*1\.root\.json/);
  const app = join(work, 'app');
  await makeAppTree(app, '1.0.0', 'healthy');
  const bundle = join(work, 'app-1.0.0.tar.gz');
  const b = await vigil(['bundle', '--app-dir', app, '--out', bundle], {
    SOURCE_DATE_EPOCH: '1700000000',
  });
  tt.equal(b.code, 0, b.err);
  tt.match(b.out, /bundle app 1\.0\.0/);
  const r = await vigil(['release', bundle, '--repo', repo, '--keys', keys, '--channel', 'stable']);
  tt.equal(r.code, 0, r.err);
  tt.match(r.out, /released stable\/vigil-app-1\.0\.0\.tar\.gz/);

  const server = await startStaticServer(repo);
  tt.teardown(() => server.close());
  const state = join(work, 'dev', 'state');
  const slots = join(work, 'dev', 'slots');
  const noRoot = await command
    .run({
      argv: ['check', '--state', state, '--slots', slots, '--url', server.url],
      env: {},
      stdout: () => undefined,
      stderr: () => undefined,
    })
    .catch((e: unknown) => e);
  tt.ok(noRoot instanceof UsageError, 'a device without a trusted root must be given one');
  const c = await vigil([
    'check',
    '--state',
    state,
    '--slots',
    slots,
    '--url',
    server.url,
    '--root',
    join(repo, 'metadata', '1.root.json'),
    '--trial-timeout',
    '60',
  ]);
  tt.equal(c.code, 0, c.err);
  tt.match(c.out, /"kind":"committed","version":"1\.0\.0"/);
  const again = await vigil(['check', '--state', state, '--slots', slots, '--url', server.url]);
  tt.equal(again.code, 0);
  tt.match(again.out, /up-to-date/);
  const f = await vigil(['refresh', '--repo', repo, '--keys', keys]);
  tt.match(f.out, /re-signed: timestamp/);
  const rot = await vigil([
    'rotate-keys',
    '--repo',
    repo,
    '--keys',
    keys,
    '--roles',
    'timestamp,snapshot',
    '--passphrase-file',
    pass,
  ]);
  tt.equal(rot.code, 0, rot.err);
  tt.match(rot.out, /root is now version 2/);
  const after = await vigil(['check', '--state', state, '--slots', slots, '--url', server.url]);
  tt.match(after.out, /up-to-date/, 'the device follows the rotation');
  tt.ok((await readdir(join(keys, 'retired'))).length === 2);
  const human = await vigil(['status', '--state', state, '--slots', slots]);
  tt.equal(human.code, 0, human.err);
  tt.match(
    human.out,
    /^slot a: empty\nslot b \(committed\): 1\.0\.0\n[\s\S]*last:\s+committed 1\.0\.0\n/,
  );
  const st = await vigil(['status', '--state', state, '--slots', slots, '--json']);
  tt.equal(st.code, 0, st.err);
  tt.match(JSON.parse(st.out), {
    committed: 'b',
    versions: { a: null, b: '1.0.0' },
    trial: null,
    bad: [],
    last: { outcome: { kind: 'committed', version: '1.0.0' }, delivered: true },
  });
});

t.test('probe and usage errors', async (tt) => {
  const p = await vigil(['probe']);
  tt.equal(p.code, 0);
  tt.match(p.out, /"ok":true,"version":"\d+\.\d+\.\d+/);
  for (const argv of [
    [],
    ['nope'],
    ['init-repo'],
    ['release', '--repo', 'x', '--keys', 'y'],
    ['rotate-keys', '--repo', 'x', '--keys', 'y', '--roles', 'bogus'],
    ['init-repo', '--unknown'],
  ]) {
    await tt.rejects(
      command.run({ argv, env: {}, stdout: () => undefined, stderr: () => undefined }),
      UsageError,
      argv.join(' ') || '(none)',
    );
  }
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  await mkdir(join(work, 'state', 'metadata'), { recursive: true });
  await tt.rejects(
    command.run({
      argv: [
        'check',
        '--state',
        join(work, 'state'),
        '--slots',
        join(work, 's'),
        '--url',
        'http://127.0.0.1:9',
        '--root',
        join(work, 'r.json'),
        '--trial-timeout',
        '-1',
      ],
      env: {},
      stdout: () => undefined,
      stderr: () => undefined,
    }),
  );
  tt.match(command.usage, /init-repo/);
});
