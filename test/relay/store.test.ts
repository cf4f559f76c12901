import t from 'tap';
import { writeFile, mkdir } from 'node:fs/promises';
import { DurableFs } from '../../hw/os/fs.js';
import {
  FsBlobStore,
  FsRecordStore,
  MemoryBlobStore,
  SpaceReserve,
  checkKey,
} from '../../relay/store.js';
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

/** A DurableFs whose disk is full while `full` is set; removing the reserve frees it. */
class FullDisk extends DurableFs {
  full = false;
  override async writeFileAtomic(path: string, data: Uint8Array | string, label?: string) {
    if (this.full)
      throw Object.assign(new Error(`ENOSPC: no space left on device, write '${path}'`), {
        code: 'ENOSPC',
      });
    await super.writeFileAtomic(path, data, label);
  }
  override async remove(path: string, label?: string) {
    if (path.endsWith('space-reserve')) this.full = false;
    await super.remove(path, label);
  }
}

t.test(
  'full disk (ENOSPC injected at the file layer): 507, and the reserve serves acks only',
  async (t) => {
    const { dir, cleanup } = await tempDir();
    t.teardown(cleanup);
    const fs = new FullDisk();
    const reserve = new SpaceReserve(`${dir}/space-reserve`, fs, 4096);
    t.equal(await reserve.ensure(), true);
    const blobs = new FsBlobStore(`${dir}/b`, fs, reserve);
    const rec = new FsRecordStore(`${dir}/r`, fs, reserve);
    fs.full = true;
    await t.rejects(blobs.put('d/1/0', Buffer.from('abc')), { code: 'ENOSPACE', status: 507 });
    await t.rejects(rec.put('items', 'd.1', { a: 1 }), { code: 'ENOSPACE', status: 507 });
    t.equal(reserve.held, true, 'an ordinary write does not touch the reserve');
    await rec.put('items', 'd.1', { a: 2 }, { freesSpace: true });
    t.equal(reserve.held, false, 'a write that frees space released the reserve and went through');
    t.same(await rec.loadAll('items'), [{ id: 'd.1', doc: { a: 2 } }]);
    fs.full = true;
    await t.rejects(blobs.put('d/1/0', Buffer.from('abc')), { code: 'ENOSPACE' });
    t.equal(await blobs.get('d/1/0'), undefined, 'nothing stored');
    fs.full = false;
    await blobs.put('d/1/0', Buffer.from('abc'));
    t.equal(reserve.held, true, 'the reserve is taken back before the next blob');
    t.same(await blobs.get('d/1/0'), Buffer.from('abc'));
    // without a reserve a record write on a full disk is a 507 too, not an internal error
    fs.full = true;
    await t.rejects(
      new FsRecordStore(`${dir}/r`, fs).put('items', 'd.2', {}, { freesSpace: true }),
      {
        code: 'ENOSPACE',
      },
    );
  },
);
