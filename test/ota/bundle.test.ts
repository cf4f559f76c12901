import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { run } from '../../hw/os/run.js';
import { buildAppBundle, productionPackages, readBundleManifest } from '../../ota/bundle.js';
import { makeAppTree, tempDir } from './helpers.js';

const LOCK = {
  name: 'vigil',
  lockfileVersion: 3,
  packages: {
    '': { name: 'vigil' },
    'node_modules/zod': { version: '4.0.0' },
    'node_modules/tap': { version: '21.0.0', dev: true },
    'node_modules/a': { version: '1.0.0' },
    'node_modules/a/node_modules/b': { version: '1.0.0' },
    'node_modules/linked': { link: true },
    'node_modules/missing-optional': { version: '1.0.0', optional: true },
  },
};

t.test('production packages come from the lockfile, dev ones stay out', async (tt) => {
  tt.same(productionPackages(JSON.stringify(LOCK)), [
    'node_modules/a',
    'node_modules/a/node_modules/b',
    'node_modules/missing-optional',
    'node_modules/zod',
  ]);
  tt.throws(() => productionPackages('{"lockfileVersion":1,"packages":{}}'));
});

t.test('bundle: dist + production node_modules + manifest, reproducible', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const app = join(work, 'app');
  await makeAppTree(app, '4.5.6', 'healthy');
  await writeFile(join(app, 'package-lock.json'), JSON.stringify(LOCK));
  for (const p of ['zod', 'tap', 'a', 'a/node_modules/b']) {
    await mkdir(join(app, 'node_modules', p), { recursive: true });
    await writeFile(join(app, 'node_modules', p, 'index.js'), `// ${p}\n`);
  }
  const out1 = join(work, 'one.tar.gz');
  const out2 = join(work, 'two.tar.gz');
  const r = await buildAppBundle({
    appDir: app,
    out: out1,
    fs: new DurableFs(),
    sourceDateEpoch: 1_700_000_000,
  });
  tt.equal(r.manifest.version, '4.5.6');
  tt.equal(r.manifest.kind, 'app');
  await buildAppBundle({
    appDir: app,
    out: out2,
    fs: new DurableFs(),
    sourceDateEpoch: 1_700_000_000,
  });
  const h = async (p: string) =>
    createHash('sha256')
      .update(await readFile(p))
      .digest('hex');
  tt.equal(await h(out1), await h(out2), 'byte-identical rebuild');
  const list = (await run('tar', ['-tzf', out1])).stdout.toString().split('\n').filter(Boolean);
  tt.equal(list[0], 'vigil-bundle.json', 'manifest first');
  tt.ok(list.includes('dist/bin/vigil.js'));
  tt.ok(list.includes('node_modules/zod/index.js'));
  tt.ok(list.includes('node_modules/a/node_modules/b/index.js'));
  tt.notOk(
    list.some((f) => f.startsWith('node_modules/tap')),
    'dev dependency left out',
  );
  tt.ok(list.includes('package-lock.json'));
  const m = await readBundleManifest(out1);
  tt.same(m, {
    format: 'vigil-bundle/1',
    kind: 'app',
    version: '4.5.6',
    entry: 'dist/bin/vigil.js',
  });
  const v = await buildAppBundle({
    appDir: app,
    out: join(work, 'v.tar.gz'),
    fs: new DurableFs(),
    version: '9.9.9',
  });
  tt.equal(v.manifest.version, '9.9.9', 'version override');
});

t.test('bad inputs', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  await mkdir(join(work, 'nobuild'));
  await writeFile(join(work, 'nobuild', 'package.json'), '{"version":"1.0.0"}');
  await tt.rejects(
    buildAppBundle({
      appDir: join(work, 'nobuild'),
      out: join(work, 'x.tar.gz'),
      fs: new DurableFs(),
    }),
    /npm run build first/,
  );
  await writeFile(join(work, 'junk.tar.gz'), 'not a tarball');
  await tt.rejects(readBundleManifest(join(work, 'junk.tar.gz')), /not a Vigil bundle/);
  const app = join(work, 'badver');
  await makeAppTree(app, '1.0.0', 'healthy');
  await tt.rejects(
    buildAppBundle({
      appDir: app,
      out: join(work, 'y.tar.gz'),
      fs: new DurableFs(),
      version: 'latest',
    }),
    /semantic version/,
  );
});
