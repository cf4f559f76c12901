import t from 'tap';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { diffImages, firstDifference } from '../../image/diff.js';
import { smallImage } from './helpers.js';

t.test('firstDifference finds the first differing byte (and length differences)', async (t) => {
  const dir = t.testdir();
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const buf = Buffer.alloc(5 * 1024 * 1024, 3);
  await writeFile(a, buf);
  await writeFile(b, buf);
  t.equal(await firstDifference(a, b), undefined);
  const c = Buffer.from(buf);
  c[4_500_000] = 9;
  await writeFile(b, c);
  t.equal(await firstDifference(a, b), 4_500_000);
  t.equal(await firstDifference(a, b, 0, 4_000_000), undefined, 'range before the difference');
  await writeFile(b, buf.subarray(0, 100));
  t.equal(await firstDifference(a, b), 100);
});

t.test('two builds of the same inputs are identical; a changed file is named', async (t) => {
  const dir = t.testdir();
  const one = await smallImage(dir, 'one.img');
  const two = await smallImage(dir, 'two.img');
  const same = await diffImages(one.image, two.image, join(dir, 'w'));
  t.ok(same.identical, 'byte-identical');
  t.match(same.summary, /^identical/);
  const boot = await smallImage(dir, 'boot.img', { bootFile: 'other dtb' });
  const d1 = await diffImages(one.image, boot.image, join(dir, 'w'));
  t.notOk(d1.identical);
  t.match(d1.summary, /partition 1; file sub\/nested\.dtb differs in content/);
  const root = await smallImage(dir, 'root.img', { rootFile: 'other\n' });
  const d2 = await diffImages(one.image, root.image, join(dir, 'w'));
  t.match(d2.summary, /partition 5; file \/etc\/hostname differs/);
});

t.test('differences outside partitions and in the table are reported', async (t) => {
  const dir = t.testdir();
  const one = await smallImage(dir, 'one.img');
  const mbr = join(dir, 'mbr.img');
  await copyFile(one.image, mbr);
  const { open } = await import('node:fs/promises');
  const fh = await open(mbr, 'r+');
  await fh.write(Buffer.from([0x55]), 0, 1, 100); // boot code area of the MBR
  await fh.close();
  const d = await diffImages(one.image, mbr, join(dir, 'w'));
  t.match(d.summary, /outside every partition/);
});
