import t from 'tap';
import type { Test } from 'tap';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { MemoryLogger } from '../../../base/logger.js';
import { DEFAULT_RETENTION_POLICY, RetentionStore } from '../../../firmware/storage/retention.js';
import type { RetentionClass, RetentionPolicy } from '../../../firmware/storage/retention.js';

const DAY = 86_400_000;
const NOW = 1_800_000_000_000;

async function tree(t: Test, capacity = 10_000) {
  const root = await mkdtemp(join(tmpdir(), 'vigil-retention-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const used = async (dir = root): Promise<number> => {
    let n = 0;
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) n += await used(p);
      else if (!e.name.startsWith('.')) n += (await stat(p)).size;
    }
    return n;
  };
  const logger = new MemoryLogger();
  const store = new RetentionStore({
    root,
    fs: new DurableFs(),
    logger,
    now: () => NOW,
    stats: async () => ({ totalBytes: capacity, freeBytes: capacity - (await used()) }),
  });
  const put = async (
    id: string,
    cls: RetentionClass,
    bytes: number,
    ageDays: number,
    delivered: boolean,
  ) => {
    const path = `${cls}/${id}.bin`;
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), Buffer.alloc(bytes));
    await store.add({ id, cls, path, bytes, createdAt: NOW - ageDays * DAY, delivered });
  };
  return { root, store, put, logger };
}

const policy = (p: Partial<RetentionPolicy>): RetentionPolicy => ({
  ...DEFAULT_RETENTION_POLICY,
  minFreeBytes: 0,
  criticalFreeBytes: 0,
  ...p,
});

void t.test('age limits delete delivered items only', async (t) => {
  const { store, put } = await tree(t);
  await store.load();
  await put('old-delivered', 'clips', 100, 40, true);
  await put('old-undelivered', 'clips', 100, 40, false);
  await put('new', 'clips', 100, 1, true);
  await put('old-pending', 'pending', 50, 8, false);
  const r = await store.enforce(policy({}));
  t.same(
    r.deleted.map((d) => [d.id, d.why]),
    [['old-delivered', 'age']],
  );
  t.same(
    store
      .items()
      .map((i) => i.id)
      .sort(),
    ['new', 'old-pending', 'old-undelivered'],
  );
  t.same(r.undeliveredDeleted, []);
});

void t.test('class byte limits, oldest delivered first', async (t) => {
  const { store, put } = await tree(t);
  await put('a', 'thumbnails', 100, 3, true);
  await put('b', 'thumbnails', 100, 2, false);
  await put('c', 'thumbnails', 100, 1, true);
  const r = await store.enforce(
    policy({ classes: { ...DEFAULT_RETENTION_POLICY.classes, thumbnails: { maxBytes: 150 } } }),
  );
  t.same(
    r.deleted.map((d) => d.id),
    ['a', 'c'],
    'undelivered b is kept even above the class limit',
  );
});

void t.test('disk pressure deletes delivered items oldest first across classes', async (t) => {
  const { store, put, root } = await tree(t, 1000);
  await put('clip-old', 'clips', 300, 5, true);
  await put('thumb-older', 'thumbnails', 100, 6, true);
  await put('pending', 'pending', 300, 7, false);
  await put('clip-new', 'clips', 200, 1, true);
  // free = 100; keep 300 free
  const r = await store.enforce(policy({ minFreeBytes: 300 }));
  t.same(
    r.deleted.map((d) => [d.id, d.why]),
    [
      ['thumb-older', 'disk-pressure'],
      ['clip-old', 'disk-pressure'],
    ],
  );
  t.equal(r.freeBytesBefore, 100);
  t.equal(r.freeBytesAfter, 500);
  t.equal(r.bytesFreed, 400);
  t.same(await readdir(join(root, 'pending')), ['pending.bin']);
  t.same(r.undeliveredDeleted, []);
});

void t.test('critical space deletes undelivered items and reports them', async (t) => {
  const { store, put, logger } = await tree(t, 1000);
  await put('u1', 'pending', 400, 3, false);
  await put('u2', 'clips', 400, 2, false);
  await put('d1', 'clips', 100, 1, true);
  // free = 100
  const r = await store.enforce(policy({ minFreeBytes: 500, criticalFreeBytes: 300 }));
  t.same(
    r.deleted.map((d) => [d.id, d.why]),
    [
      ['d1', 'disk-pressure'],
      ['u1', 'critical'],
    ],
  );
  t.same(
    r.undeliveredDeleted.map((d) => d.id),
    ['u1'],
  );
  t.equal(r.stillCritical, false);
  t.ok(
    logger.lines.some(
      (l) => l.includes('"error"') && l.includes('never delivered') && l.includes('u1'),
    ),
  );
  t.same(
    store.items().map((i) => i.id),
    ['u2'],
  );
});

void t.test('index reconciles with the tree and survives reloads', async (t) => {
  const { store, put, root } = await tree(t);
  await put('a', 'clips', 10, 1, true);
  await put('b', 'clips', 10, 1, false);
  await rm(join(root, 'clips', 'a.bin'));
  await mkdir(join(root, 'thumbnails', 'x'), { recursive: true });
  await writeFile(join(root, 'thumbnails', 'x', 'stray.jpg'), 'abc');
  await store.load();
  t.same(
    store.items().map((i) => [i.id, i.delivered]),
    [
      ['b', false],
      ['adopted:thumbnails/x/stray.jpg', false],
    ],
    'missing file dropped; unknown file adopted as undelivered',
  );
  t.equal(store.reconciled, true);
  t.equal(await store.markDelivered('b'), true);
  t.equal(await store.markDelivered('b'), false);
  t.equal(await store.markDelivered('zzz'), false);
  const again = new RetentionStore({
    root,
    fs: new DurableFs(),
    logger: new MemoryLogger(),
    stats: async () => ({ totalBytes: 1, freeBytes: 1 }),
  });
  await again.load();
  t.equal(again.items().find((i) => i.id === 'b')?.delivered, true, 'delivery persisted');

  await writeFile(join(root, '.retention-index.json'), '{broken');
  const third = new RetentionStore({
    root,
    fs: new DurableFs(),
    logger: new MemoryLogger(),
    stats: async () => ({ totalBytes: 1, freeBytes: 1 }),
  });
  await third.load();
  t.equal(third.items().length, 2, 'rebuilt from the tree');
  t.ok(
    third.items().every((i) => !i.delivered),
    'rebuilt items are conservatively undelivered',
  );
});

void t.test('bad input', async (t) => {
  const { store } = await tree(t);
  await t.rejects(
    store.add({
      id: 'x',
      cls: 'clips',
      path: 'thumbnails/x',
      bytes: 1,
      createdAt: 0,
      delivered: false,
    }),
    { code: 'EVALIDATION' },
  );
  await t.rejects(
    store.add({
      id: 'x',
      cls: 'clips',
      path: 'clips/../../etc/passwd',
      bytes: 1,
      createdAt: 0,
      delivered: false,
    }),
    { code: 'EVALIDATION' },
  );
  await t.rejects(
    store.add({ id: '', cls: 'clips', path: 'clips/x', bytes: 1, createdAt: 0, delivered: false }),
    { code: 'EVALIDATION' },
  );
  await t.rejects(
    store.enforce(policy({ minFreeBytes: 1, criticalFreeBytes: 2 })),
    /criticalFreeBytes/,
  );
});

void t.test('a full disk: load() writes nothing, enforce() frees space first', async (t) => {
  const { put, root } = await tree(t, 1000);
  await put('d1', 'clips', 500, 2, true);
  await mkdir(join(root, 'pending'), { recursive: true });
  await writeFile(join(root, 'pending', 'stray.bin'), Buffer.alloc(480));
  const writes: string[] = [];
  const watched = new RetentionStore({
    root,
    fs: new (class extends DurableFs {
      override async writeFileAtomic(p: string, d: Uint8Array | string, l?: string): Promise<void> {
        writes.push(p);
        await super.writeFileAtomic(p, d, l);
      }
    })(),
    logger: new MemoryLogger(),
    now: () => NOW,
    stats: async () => ({ totalBytes: 1000, freeBytes: 20 }),
  });
  await watched.load();
  t.same(writes, [], 'nothing written while the disk is full');
  const r = await watched.enforce(policy({ minFreeBytes: 100 }));
  t.same(
    r.deleted.map((d) => d.id),
    ['d1'],
  );
  t.equal(writes.length, 1, 'index saved after space was freed');
});
