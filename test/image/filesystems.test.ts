import t from 'tap';
import { mkdir, readFile, writeFile, utimes, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../hw/os/run.js';
import {
  FilesystemError,
  assembleImage,
  clampTimes,
  debugfsTimeScript,
  makeExt4,
  makeFat,
  walk,
} from '../../image/filesystems.js';
import { fatList, fatRead } from '../../image/disk.js';
import { planLayout, sfdiskScript } from '../../image/layout.js';
import { EPOCH } from './helpers.js';

async function tree(dir: string, content = 'x'): Promise<void> {
  await mkdir(join(dir, 'etc', 'deep'), { recursive: true });
  await writeFile(join(dir, 'etc', 'a.conf'), content);
  await writeFile(join(dir, 'etc', 'deep', 'b'), 'b');
  await symlink('a.conf', join(dir, 'etc', 'link'));
  // a file "newer" than the epoch, as maintainer scripts leave them
  await utimes(join(dir, 'etc', 'a.conf'), EPOCH + 5000, EPOCH + 5000);
}

t.test('walk lists parents before children, sorted', async (t) => {
  const d = t.testdir();
  await tree(d);
  t.same(await walk(d), ['/', '/etc', '/etc/a.conf', '/etc/deep', '/etc/deep/b', '/etc/link']);
});

t.test('clampTimes: mtimes never after the epoch, atimes at it', async (t) => {
  const d = t.testdir();
  await tree(d);
  await utimes(join(d, 'etc', 'deep', 'b'), 1000, 1000);
  t.equal(await clampTimes(d, EPOCH), 6);
  const { lstat } = await import('node:fs/promises');
  t.equal(Math.floor((await lstat(join(d, 'etc', 'a.conf'))).mtimeMs / 1000), EPOCH);
  t.equal(
    Math.floor((await lstat(join(d, 'etc', 'deep', 'b'))).mtimeMs / 1000),
    1000,
    'older times are kept',
  );
  t.equal(Math.floor((await lstat(join(d, 'etc', 'deep', 'b'))).atimeMs / 1000), EPOCH);
});

t.test('debugfs script: ctime and atime per path; refuses names it cannot quote', async (t) => {
  t.equal(
    debugfsTimeScript(['/', '/a b'], 5),
    'sif "/" ctime @5\nsif "/" atime @5\nsif "/a b" ctime @5\nsif "/a b" atime @5\n',
  );
  t.throws(() => debugfsTimeScript(['/a"b'], 5), FilesystemError);
  // systemd unit names carry backslashes: debugfs takes them literally inside quotes
  t.equal(
    debugfsTimeScript(['/system-systemd\\x2dcryptsetup.slice'], 5).split('\n')[0],
    'sif "/system-systemd\\x2dcryptsetup.slice" ctime @5',
  );
});

t.test('ext4 from a directory is byte-identical whatever the host ctimes', async (t) => {
  const base = t.testdir();
  const a = join(base, 'a');
  const b = join(base, 'b');
  await tree(a);
  await new Promise((r) => setTimeout(r, 1100)); // different ctimes on the host
  await tree(b);
  for (const d of [a, b]) await writeFile(join(d, 'etc', 'system-x\\x2dy.slice'), 'unit');
  await makeExt4({
    sourceDir: a,
    output: join(base, 'a.ext4'),
    sizeMiB: 16,
    label: 'root',
    epoch: EPOCH,
  });
  await makeExt4({
    sourceDir: b,
    output: join(base, 'b.ext4'),
    sizeMiB: 16,
    label: 'root',
    epoch: EPOCH,
  });
  t.ok(
    (await readFile(join(base, 'a.ext4'))).equals(await readFile(join(base, 'b.ext4'))),
    'identical bytes',
  );
  const stat = (
    await run('debugfs', ['-R', 'stat /etc/a.conf', join(base, 'a.ext4')])
  ).stdout.toString();
  t.match(stat, /ctime: 0x6553f100/);
  t.match(stat, /mtime: 0x6553f100/);
  const dump = (
    await run('debugfs', ['-R', 'cat /etc/deep/b', join(base, 'a.ext4')])
  ).stdout.toString();
  t.equal(dump, 'b');
  // a different file content gives a different filesystem
  const c = join(base, 'c');
  await tree(c, 'y');
  await makeExt4({
    sourceDir: c,
    output: join(base, 'c.ext4'),
    sizeMiB: 16,
    label: 'root',
    epoch: EPOCH,
  });
  t.notOk((await readFile(join(base, 'a.ext4'))).equals(await readFile(join(base, 'c.ext4'))));
});

t.test('ext4 too small for its content: a clear error', async (t) => {
  const base = t.testdir();
  await mkdir(join(base, 'big'));
  await writeFile(join(base, 'big', 'blob'), Buffer.alloc(12 * 1024 * 1024, 1));
  await t.rejects(
    makeExt4({
      sourceDir: join(base, 'big'),
      output: join(base, 'x.ext4'),
      sizeMiB: 8,
      label: 'r',
      epoch: EPOCH,
    }),
    /big enough/,
  );
});

t.test('FAT: reproducible, files readable with mtools', async (t) => {
  const base = t.testdir();
  const a = join(base, 'a');
  const b = join(base, 'b');
  await tree(a);
  await tree(b);
  await rmLink(a);
  await rmLink(b);
  await makeFat({
    output: join(base, 'a.vfat'),
    sizeMiB: 32,
    label: 'VIGILBOOTA',
    epoch: EPOCH,
    sourceDir: a,
    fatBits: 16,
  });
  await new Promise((r) => setTimeout(r, 1100));
  await makeFat({
    output: join(base, 'b.vfat'),
    sizeMiB: 32,
    label: 'VIGILBOOTA',
    epoch: EPOCH,
    sourceDir: b,
    fatBits: 16,
  });
  t.ok(
    (await readFile(join(base, 'a.vfat'))).equals(await readFile(join(base, 'b.vfat'))),
    'identical bytes',
  );
  t.same(await fatList(join(base, 'a.vfat')), ['etc/a.conf', 'etc/deep/b']);
  t.equal((await fatRead(join(base, 'a.vfat'), 'etc/a.conf')).toString(), 'x');
});

async function rmLink(d: string): Promise<void> {
  const { rm } = await import('node:fs/promises');
  await rm(join(d, 'etc', 'link')); // FAT has no symlinks
}

t.test('assembleImage refuses a filesystem bigger than its partition', async (t) => {
  const base = t.testdir();
  const l = planLayout({ bootMiB: 32, rootMiB: 4, provisioningMiB: 16, dataMiB: 4 });
  await writeFile(join(base, 'big'), Buffer.alloc(5 * 1024 * 1024));
  await t.rejects(
    assembleImage(join(base, 'x.img'), l, sfdiskScript(l), [
      { number: 5, file: join(base, 'big') },
    ]),
    /does not fit partition 5/,
  );
  await t.rejects(
    assembleImage(join(base, 'x.img'), l, sfdiskScript(l), [
      { number: 9, file: join(base, 'big') },
    ]),
    /no partition 9/,
  );
});
