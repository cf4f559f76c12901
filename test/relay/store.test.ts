import t from 'tap';
import { writeFile, mkdir } from 'node:fs/promises';
import { DurableFs } from '../../hw/os/fs.js';
import { FsBlobStore, FsRecordStore, MemoryBlobStore, checkKey } from '../../relay/store.js';
import { tempDir } from './fixtures.js';

t.test('keys are checked', async (t) => {
  t.equal(checkKey('dev/1/000000000000'), 'dev/1/000000000000');
  for (const bad of ['', '../x', 'a/../b', '/abs', 'a//b', 'a b', 'a/./b'])
    t.throws(() => checkKey(bad), { code: 'EKEY' }, JSON.stringify(bad));
});

t.test('filesystem blobs and records', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const fs = new DurableFs();
  const blobs = new FsBlobStore(`${dir}/b`, fs);
  await blobs.put('d/1/0', Buffer.from('abc'));
  t.same(await blobs.get('d/1/0'), Buffer.from('abc'));
  t.equal(await blobs.get('d/1/9'), undefined);
  await blobs.delete('d/1/0');
  await blobs.delete('d/1/0');
  t.equal(await blobs.get('d/1/0'), undefined);
  await t.rejects(blobs.put('../x', Buffer.from('x')), { code: 'EKEY' });

  const rec = new FsRecordStore(`${dir}/r`, fs);
  t.same(await rec.loadAll('items'), [], 'empty namespace');
  await rec.put('items', 'd.2', { a: 2 });
  await rec.put('items', 'd.1', { a: 1 });
  t.same(await rec.loadAll('items'), [
    { id: 'd.1', doc: { a: 1 } },
    { id: 'd.2', doc: { a: 2 } },
  ]);
  await rec.delete('items', 'd.1');
  t.same(
    (await rec.loadAll('items')).map((x) => x.id),
    ['d.2'],
  );
  // leftovers of an interrupted write are cleaned; a corrupt record is reported
  await writeFile(`${dir}/r/items/.d.3.json.1.1.tmp`, 'partial');
  t.equal((await rec.loadAll('items')).length, 1);
  await mkdir(`${dir}/r/bad`, { recursive: true });
  await writeFile(`${dir}/r/bad/x.json`, '{nope');
  await t.rejects(rec.loadAll('bad'), { code: 'ECORRUPT' });

  const mem = new MemoryBlobStore();
  await mem.put('k', Buffer.from('v'));
  t.same(await mem.get('k'), Buffer.from('v'));
  await mem.delete('k');
  t.equal(await mem.get('k'), undefined);
});
