/**
 * The release side, checked by an independent TUF client: tuf-js (the npm
 * implementation) must accept every repository state we publish — after
 * init, release, refresh and key rotation — and download the bundle.
 */
import { copyFile, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { Updater } from 'tuf-js';
import { DurableFs } from '../../hw/os/fs.js';
import {
  initRepo,
  loadRepo,
  refresh,
  release,
  RepoError,
  rotateKeys,
  targetFilePath,
  targetNameFor,
} from '../../ota/repo.js';
import type { RepoContext } from '../../ota/repo.js';
import { startStaticServer } from '../../ota/static-server.js';
import { repoContext, tempDir } from './helpers.js';

async function setup(
  tt: Test,
  opts: { rootKeys?: number; rootThreshold?: number; passphrase?: boolean } = {},
) {
  const work = await tempDir();
  // tuf-js checks expiry against the real clock: publish with the real time.
  const now = { d: new Date() };
  const ctx = repoContext(work, {
    now: () => now.d,
    ...(opts.passphrase === false ? {} : { passphrase: Buffer.from('offline root passphrase') }),
  });
  await initRepo(ctx, {
    rootKeys: opts.rootKeys ?? 1,
    rootThreshold: opts.rootThreshold ?? opts.rootKeys ?? 1,
  });
  const server = await startStaticServer(ctx.repoDir);
  tt.teardown(async () => {
    await server.close();
    await rm(work, { recursive: true, force: true });
  });
  // A tuf-js client bootstrapped with version 1 of root, as a device would be.
  const clientDir = join(work, 'tufjs');
  await mkdir(join(clientDir, 'targets'), { recursive: true });
  await copyFile(join(ctx.repoDir, 'metadata', '1.root.json'), join(clientDir, 'root.json'));
  const updater = (): Updater =>
    new Updater({
      metadataDir: clientDir,
      metadataBaseUrl: `${server.url}/metadata`,
      targetBaseUrl: `${server.url}/targets`,
      targetDir: join(clientDir, 'targets'),
    });
  return { work, ctx, now, server, updater, clientDir };
}

t.test('init-repo publishes TUF 1.0 metadata a stock client accepts', async (tt) => {
  const { ctx, updater, work } = await setup(tt);
  const files = (await readdir(join(ctx.repoDir, 'metadata'))).sort();
  tt.same(files, [
    '1.root.json',
    '1.snapshot.json',
    '1.targets.json',
    'root.json',
    'timestamp.json',
  ]);
  await updater().refresh();
  tt.pass('tuf-js refreshed the fresh repository');
  // The keys never land in the published tree.
  const published = JSON.stringify(await readdir(ctx.repoDir, { recursive: true }));
  tt.notMatch(published, /key/, 'no key file in the repository');
  const keyFiles = await readdir(ctx.keysDir);
  tt.equal(keyFiles.filter((f) => f.endsWith('.json')).length, 4, 'one key per role');
  const mode = (await stat(ctx.keysDir)).mode & 0o777;
  tt.equal(mode, 0o700, 'keys directory is private');
  const rootKey = keyFiles.find((f) => f.startsWith('root-')) ?? '';
  const text = await readFile(join(ctx.keysDir, rootKey), 'utf8');
  tt.match(text, /"sealed"/, 'the root key is sealed with the passphrase');
  tt.notMatch(text, /pkcs8/, 'no clear private root key');
  tt.ok(work);
});

t.test('release: tuf-js verifies and downloads the bundle', async (tt) => {
  const { ctx, updater } = await setup(tt);
  const bundle = Buffer.from('a bundle, pretend it is a tarball\n'.repeat(100));
  const r = await release(ctx, { bundle, channel: 'stable', version: '1.2.3', kind: 'app' });
  tt.equal(r.targetPath, 'stable/vigil-app-1.2.3.tar.gz');
  tt.equal(r.targetsVersion, 2);
  tt.equal(r.timestampVersion, 2);
  const u = updater();
  await u.refresh();
  const info = await u.getTargetInfo('stable/vigil-app-1.2.3.tar.gz');
  tt.ok(info, 'target listed');
  tt.equal(info?.length, bundle.length);
  tt.same(info?.custom, { vigil: { version: '1.2.3', channel: 'stable', kind: 'app' } });
  const path = await u.downloadTarget(info!);
  tt.same(await readFile(path), bundle, 'tuf-js downloaded the exact bytes');
  await tt.rejects(
    release(ctx, { bundle, channel: 'stable', version: '1.2.3', kind: 'app' }),
    RepoError,
    'versions are immutable',
  );
  // A beta release lives beside it.
  await release(ctx, {
    bundle: Buffer.from('beta'),
    channel: 'beta',
    version: '1.3.0-beta.1',
    kind: 'app',
  });
  const u2 = updater();
  await u2.refresh();
  tt.ok(await u2.getTargetInfo('beta/vigil-app-1.3.0-beta.1.tar.gz'), 'beta channel target');
  tt.equal(
    targetNameFor({ channel: 'beta', version: '2.0.0', kind: 'rootfs' }),
    'beta/vigil-rootfs-2.0.0.raucb',
  );
  tt.match(
    targetFilePath(ctx.repoDir, r.targetPath, r.sha256),
    /targets\/stable\/[0-9a-f]{64}\.vigil-app-1\.2\.3\.tar\.gz$/,
  );
});

t.test('refresh re-signs the timestamp (and what is about to expire)', async (tt) => {
  const { ctx, now, updater } = await setup(tt);
  const base = now.d.getTime();
  now.d = new Date(base + 86_400_000 * 0.5);
  tt.same(await refresh(ctx), ['timestamp']);
  now.d = new Date(base + 86_400_000 * 25);
  tt.same(
    await refresh(ctx),
    ['snapshot', 'timestamp'],
    'snapshot expires within 7 days: re-signed',
  );
  now.d = new Date(base + 86_400_000 * 85);
  tt.same(await refresh(ctx), ['targets', 'snapshot', 'timestamp']);
  const s = await loadRepo(ctx);
  tt.equal(s.timestamp.signed.version, 4);
  // Signed 85 days ahead of the real clock: tuf-js accepts it (not expired, versions chain).
  await updater().refresh();
  tt.pass('tuf-js accepts the refreshed metadata');
});

t.test('rotating the online keys: a client on root v1 follows to v2', async (tt) => {
  const { ctx, updater } = await setup(tt, { rootKeys: 2, rootThreshold: 2 });
  await release(ctx, {
    bundle: Buffer.from('v1'),
    channel: 'stable',
    version: '1.0.0',
    kind: 'app',
  });
  const before = await loadRepo(ctx);
  const r = await rotateKeys(ctx, ['timestamp', 'snapshot', 'targets']);
  tt.equal(r.rootVersion, 2);
  tt.equal(r.retired.length, 3);
  const after = await loadRepo(ctx);
  for (const role of ['timestamp', 'snapshot', 'targets'] as const) {
    tt.not(
      after.root.signed.roles[role].keyids[0],
      before.root.signed.roles[role].keyids[0],
      `${role} key changed`,
    );
  }
  tt.equal(after.root.signatures.length, 2, 'root v2 signed by both root keys (threshold 2)');
  const retired = await readdir(join(ctx.keysDir, 'retired'));
  tt.equal(retired.length, 3, 'old online keys retired');
  const u = updater();
  await u.refresh();
  tt.ok(
    await u.getTargetInfo('stable/vigil-app-1.0.0.tar.gz'),
    'tuf-js walked 2.root.json and verified the new keys',
  );
  // And the root key itself.
  const r2 = await rotateKeys(ctx, ['root']);
  tt.equal(r2.rootVersion, 3);
  const u2 = updater();
  await u2.refresh();
  tt.pass('tuf-js accepted root v3 (signed by the old and the new root keys)');
});

t.test('the keys directory may not live inside the repository', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const fs = new DurableFs();
  await tt.rejects(
    initRepo({ repoDir: join(work, 'repo'), keysDir: join(work, 'repo', 'keys'), fs }),
    /must not be inside/,
  );
  await tt.rejects(
    initRepo({ repoDir: join(work, 'x', 'repo'), keysDir: join(work, 'x'), fs }),
    /must not be inside/,
  );
});

t.test('a sealed root key needs its passphrase; bad options are refused', async (tt) => {
  const { ctx } = await setup(tt);
  const noPass: RepoContext = {
    repoDir: ctx.repoDir,
    keysDir: ctx.keysDir,
    fs: ctx.fs,
    ...(ctx.now ? { now: ctx.now } : {}),
  };
  await tt.rejects(rotateKeys(noPass, ['timestamp']), /sealed/);
  await tt.rejects(
    rotateKeys({ ...ctx, passphrase: Buffer.from('wrong passphrase') }, ['timestamp']),
    /wrong passphrase/,
  );
  // Release needs only online keys: works without the root passphrase.
  await release(noPass, {
    bundle: Buffer.from('x'),
    channel: 'stable',
    version: '0.1.0',
    kind: 'app',
  });
  await tt.rejects(initRepo(ctx), /already holds a repository/);
  const w = await tempDir();
  tt.teardown(() => rm(w, { recursive: true, force: true }));
  await tt.rejects(
    initRepo(
      { repoDir: join(w, 'r'), keysDir: join(w, 'k'), fs: ctx.fs },
      { rootKeys: 2, rootThreshold: 3 },
    ),
    /root-threshold/,
  );
  await tt.rejects(rotateKeys(ctx, []), /at least one role/);
});

t.test('an unsealed root key is allowed (development) and stays usable', async (tt) => {
  const { ctx } = await setup(tt, { passphrase: false });
  const names = await readdir(ctx.keysDir);
  const root = await readFile(
    join(ctx.keysDir, names.find((n) => n.startsWith('root-')) ?? ''),
    'utf8',
  );
  tt.match(root, /pkcs8/);
  const r = await rotateKeys(ctx, ['snapshot']);
  tt.equal(r.rootVersion, 2);
});
