import t from 'tap';
import { join } from 'node:path';
import { readTable } from '../../image/disk.js';
import { command, resolveEpoch } from '../../image/cli.js';
import { UsageError } from '../../base/command.js';
import { bundleDir, smallImage } from './helpers.js';

function ctx(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    c: { argv, env, stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s) },
    out,
    err,
  };
}

t.test('usage errors are one clear line', async (t) => {
  t.equal(command.name, 'image');
  t.match(command.usage, /vigil image build --board rpi-arm64\|qemu-amd64/);
  const cases: [string[], RegExp][] = [
    [[], /missing subcommand/],
    [['frobnicate'], /unknown subcommand "frobnicate"/],
    [['build'], /--board is required/],
    [['build', '--board', 'pi5'], /--board must be one of .*got "pi5"/],
    [
      ['build', '--board', 'rpi-arm64', '--kernel-source', 'vendor'],
      /--kernel-source must be one of debian, raspberrypi/,
    ],
    [['build', '--board', 'rpi-arm64', '--kernel-source', 'raspberrypi'], /needs --rpi-keyring/],
    [
      ['build', '--board', 'qemu-amd64', '--kernel-source', 'raspberrypi', '--rpi-keyring', '/k'],
      /for --board rpi-arm64/,
    ],
    [['build', '--board', 'qemu-amd64', '--source-date-epoch', 'yesterday'], /whole seconds/],
    [['build', '--board', 'qemu-amd64', '--bogus'], /bogus/],
    [['provision', 'only-one'], /provision needs <image> <device-bundle>/],
    [['diff', 'a'], /diff needs <a.img> <b.img>/],
  ];
  for (const [argv, re] of cases) {
    const { c } = ctx(argv);
    await t.rejects(command.run(c), UsageError, argv.join(' '));
    await t.rejects(command.run(c), re, argv.join(' '));
  }
});

t.test('SOURCE_DATE_EPOCH: flag, then environment, then the last commit', async (t) => {
  t.equal(await resolveEpoch(5, { SOURCE_DATE_EPOCH: '9' }, '/nonexistent'), 5);
  t.equal(await resolveEpoch(undefined, { SOURCE_DATE_EPOCH: '9' }, '/nonexistent'), 9);
  await t.rejects(
    resolveEpoch(undefined, { SOURCE_DATE_EPOCH: 'x' }, '/nonexistent'),
    /whole seconds/,
  );
  const fromGit = await resolveEpoch(undefined, {}, process.cwd());
  t.ok(fromGit > 1_600_000_000, 'commit time of this checkout');
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const outside = await mkdtemp(join(tmpdir(), 'vigil-nogit-'));
  t.teardown(() => rm(outside, { recursive: true, force: true }));
  await t.rejects(resolveEpoch(undefined, {}, outside), /no SOURCE_DATE_EPOCH/);
});

t.test('provision and diff through the command', async (t) => {
  const dir = t.testdir();
  const { image } = await smallImage(dir, 'a.img');
  const b = await bundleDir(join(dir, 'bundle'));
  const p = ctx(['provision', image, b.dir]);
  t.equal(await command.run(p.c), 0);
  t.match(p.out.join(''), /provisioned .*a\.img: device\.json into partition 3 \(VIGILPROV\)/);
  t.notMatch(
    p.out.join(''),
    new RegExp(JSON.parse(b.json).secret as string),
    'the secret is never printed',
  );
  const { image: other } = await smallImage(dir, 'b.img');
  const d = ctx(['diff', image, other]);
  t.equal(await command.run(d.c), 1, 'provisioned vs. fresh differ');
  t.match(d.out.join(''), /partition 3; file device\.json only in the first image/);
  const same = ctx(['diff', other, other]);
  t.equal(await command.run(same.c), 0);
  // grow-data on an image file, root prefix for the flag
  const { run } = await import('../../hw/os/run.js');
  await run('truncate', ['-s', '+64M', other]);
  const g = ctx(['grow-data', '--device', other], { VIGIL_ROOT: join(dir, 'root') });
  t.equal(await command.run(g.c), 0);
  t.match(g.out.join(''), /grown from 8 MiB to 72 MiB/);
  t.equal((await readTable(other)).partitions.find((x) => x.number === 7)?.size, 72 * 2048);
});
