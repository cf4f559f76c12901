// CI's image step (.ci/test-all.mjs "image"; run as root):
//   1. the amd64 twin built twice from the same inputs, byte-identical (`vigil image reproduce`);
//      build 1 is what the system scenario image-twin-boot then boots;
//   2. with VIGIL_IMAGE_ARM64=1 only (~25 min more): the Raspberry Pi image once, checked for the
//      planned layout and the boot files of every supported board.
// Run: npx tap --disable-coverage --timeout=5400 test/image/ci-image.ts
import t from 'tap';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../hw/os/run.js';
import { boardOf } from '../../image/boards.js';
import { buildImage, findRepo } from '../../image/build.js';
import { resolveEpoch } from '../../image/cli.js';
import { diffImages } from '../../image/diff.js';
import { fatList, mtoolsTarget, partitionNumbered, readTable } from '../../image/disk.js';
import { compareWithPlan } from '../../image/layout.js';
import { CARD_PARTITIONS } from '../../protocol/card-layout.js';

const repo = await findRepo();
const epoch = await resolveEpoch(undefined, process.env, repo);
const print = (l: string): void => {
  process.stderr.write(`# ${l}\n`);
};

t.test('the amd64 twin builds twice byte-identical', async (t) => {
  const out = join(repo, 'image/out/qemu-amd64-ci');
  const board = boardOf('qemu-amd64');
  const common = {
    board,
    kernelSource: 'debian' as const,
    sourceDateEpoch: epoch,
    compress: false,
    print,
    repo,
  };
  const a = await buildImage({ ...common, outDir: join(out, 'build-1') });
  t.match(a.sha256, /^[0-9a-f]{64}$/, `build 1: ${Math.round(a.seconds)} s, image hashed`);
  const b = await buildImage({
    ...common,
    outDir: join(out, 'build-2'),
    ...(a.commit !== undefined ? { commit: a.commit } : {}),
  });
  t.match(b.sha256, /^[0-9a-f]{64}$/, `build 2: ${Math.round(b.seconds)} s, image hashed`);
  t.same(compareWithPlan(a.layout, (await readTable(a.image)).partitions), [], 'table as planned');
  const d = await diffImages(a.image, b.image, join(out, 'diff-work'));
  t.ok(d.identical, d.summary);
  t.equal(a.sha256, b.sha256, 'same SHA-256');

  // the headless root (image/rootfs.ts HEADLESS_EXCLUDES): no GPU drivers, and the root's
  // own ffmpeg (run in a chroot of root A: same architecture as this host) still records
  // H.264 and writes a JPEG thumbnail with the libraries that are there
  const table = await readTable(a.image);
  const rootA = partitionNumbered(table, CARD_PARTITIONS['root-a'], a.image);
  const tree = await mkdtemp(join(tmpdir(), 'vigil-twin-root-'));
  try {
    await run(
      'debugfs',
      ['-R', `rdump / ${tree}`, `${a.image}?offset=${String(rootA.start * 512)}`],
      {
        timeoutMs: 600_000,
      },
    );
    const libs = join(tree, 'usr/lib/x86_64-linux-gnu');
    const names = await readdir(libs);
    // dpkg still makes the excluded files' directories (dri/, mfx/): they must stay empty
    const left = names.filter((n) => /^(libLLVM-|libz3\.so|libmfxhw64\.so)/.test(n));
    for (const dir of ['dri', 'mfx'])
      if (names.includes(dir))
        left.push(...(await readdir(join(libs, dir))).map((n) => `${dir}/${n}`));
    t.same(left, [], 'no GPU drivers, LLVM, Z3 or Media SDK runtime in the root');
    t.ok(names.includes('libavcodec.so.59'), 'ffmpeg libraries present');
    const ffmpeg = (args: string[]) =>
      run(
        'chroot',
        [tree, '/usr/bin/ffmpeg', '-nostdin', '-hide_banner', '-loglevel', 'error', ...args],
        {
          timeoutMs: 120_000,
        },
      );
    await ffmpeg([
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=320x240:rate=10',
      '-frames:v',
      '10',
      '-c:v',
      'libx264',
      '-y',
      '/tmp/clip.mp4',
    ]);
    await ffmpeg([
      '-i',
      '/tmp/clip.mp4',
      '-frames:v',
      '1',
      '-c:v',
      'mjpeg',
      '-y',
      '/tmp/thumb.jpg',
    ]);
    t.ok((await stat(join(tree, 'tmp/clip.mp4'))).size > 0, "the root's ffmpeg encodes H.264");
    t.ok((await stat(join(tree, 'tmp/thumb.jpg'))).size > 0, 'and a JPEG thumbnail');
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
});

t.test(
  'the Raspberry Pi image (VIGIL_IMAGE_ARM64=1)',
  { skip: process.env.VIGIL_IMAGE_ARM64 !== '1' && 'set VIGIL_IMAGE_ARM64=1 (~25 min)' },
  async (t) => {
    const board = boardOf('rpi-arm64');
    const r = await buildImage({
      board,
      kernelSource: 'debian',
      sourceDateEpoch: epoch,
      compress: true,
      print,
      repo,
      outDir: join(repo, 'image/out/rpi-arm64-ci'),
    });
    t.match(r.sha256, /^[0-9a-f]{64}$/, `built in ${Math.round(r.seconds)} s, image hashed`);
    const table = await readTable(r.image);
    t.same(compareWithPlan(r.layout, table.partitions), [], 'table as planned');
    const files = await fatList(mtoolsTarget(r.image, partitionNumbered(table, 1, r.image)));
    for (const f of [
      'config.txt',
      'cmdline.txt',
      'autoboot.txt',
      `vmlinuz-${r.kernelVersion}`,
      `initrd.img-${r.kernelVersion}`,
      'start_x.elf',
      'start4x.elf',
      'bootcode.bin',
    ]) {
      t.ok(files.includes(f), `boot partition has ${f}`);
    }
    for (const d of board.requiredDtbs)
      t.ok(files.includes(d.split('/').pop() ?? ''), `boot partition has ${d}`);
  },
);
