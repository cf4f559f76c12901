import t from 'tap';
import type { Test } from 'tap';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { MemoryLogger } from '../../../base/logger.js';
import type { CiphertextSink } from '../../../firmware/items.js';
import { parseConfig } from '../../../firmware/config/config.js';
import {
  HubRetention,
  backlogFromConfig,
  policyFromConfig,
} from '../../../firmware/storage/hub-retention.js';
import { tempDir } from '../../relay/fixtures.js';

const DAY = 86_400_000;
const MIB = 1024 * 1024;

async function used(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += await used(p);
    else if (!e.name.startsWith('.')) n += (await stat(p)).size;
  }
  return n;
}

async function setup(
  t: Test,
  capacity: number,
  minFree: number,
  critical: number,
  innerSink?: CiphertextSink,
) {
  const { dir, cleanup } = await tempDir('vigil-hub-retention-');
  t.teardown(cleanup);
  let now = 1_800_000_000_000;
  const forwarded: string[] = [];
  const inner: CiphertextSink = innerSink ?? {
    append: (itemId, kind, _bytes, final) => {
      if (final) forwarded.push(`${kind}:${itemId}`);
      return Promise.resolve();
    },
  };
  let backlogRuns = 0;
  const h = await HubRetention.open({
    root: dir,
    fs: new DurableFs(),
    stats: async () => ({ totalBytes: capacity, freeBytes: capacity - (await used(dir)) }),
    logger: new MemoryLogger(),
    policy: {
      classes: {
        clips: { maxAgeDays: 30 },
        thumbnails: { maxAgeDays: 10 },
        pending: { maxAgeDays: 7 },
      },
      minFreeBytes: minFree,
      criticalFreeBytes: critical,
    },
    intervalMs: 3_600_000,
    enforceBacklog: () => {
      backlogRuns += 1;
      return Promise.resolve();
    },
    now: () => now,
  });
  return {
    dir,
    h,
    sink: h.sink(inner),
    forwarded,
    backlogRuns: () => backlogRuns,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

t.test('the config block maps onto the retention policy and the backlog bounds', async (t) => {
  const r = parseConfig({
    retention: { clipsDays: 14, pendingDays: 3, minFreeMiB: 100, backlogMaxMiB: 20 },
  }).retention;
  t.same(policyFromConfig(r), {
    classes: {
      clips: { maxAgeDays: 14 },
      thumbnails: { maxAgeDays: 30 },
      pending: { maxAgeDays: 3 },
    },
    minFreeBytes: 100 * MIB,
    criticalFreeBytes: 64 * MIB,
  });
  t.same(backlogFromConfig(r), { maxBytes: 20 * MIB, maxAgeMs: 3 * DAY });
});

t.test('sealed items are kept as clips/ and thumbnails/ copies; live passes through', async (t) => {
  const s = await setup(t, 1_000_000, 1000, 500);
  await s.sink.append('aa01', 'clip', Buffer.alloc(300, 1), false);
  await s.sink.append('aa01', 'clip', Buffer.alloc(200, 2), true);
  await s.sink.append('bb01', 'thumbnail', Buffer.alloc(50, 3), true);
  await s.sink.append('cc01', 'live', Buffer.alloc(50, 4), true);
  t.same(s.forwarded, ['clip:aa01', 'thumbnail:bb01', 'live:cc01'], 'everything goes on');
  const clip = await stat(join(s.dir, 'clips', 'aa01.vgi'));
  t.equal(clip.size, 500);
  t.equal((await stat(join(s.dir, 'thumbnails', 'bb01.vgi'))).size, 50);
  t.same(
    s.h.store
      .items()
      .map((i) => [i.id, i.cls, i.delivered])
      .sort(),
    [
      ['aa01', 'clips', false],
      ['bb01', 'thumbnails', false],
    ],
  );
  t.equal(s.backlogRuns(), 2, 'retention (with the backlog bounds) ran before each new item');
});

t.test('age removes acknowledged copies only; undelivered wait', async (t) => {
  const s = await setup(t, 1_000_000, 1000, 500);
  await s.sink.append('aa01', 'clip', Buffer.alloc(100), true);
  await s.sink.append('aa02', 'clip', Buffer.alloc(100), true);
  await s.h.markDelivered(['aa01']);
  s.advance(31 * DAY);
  const r = await s.h.run();
  t.same(
    r.deleted.map((d) => [d.id, d.why]),
    [['aa01', 'age']],
  );
  t.same(
    s.h.store.items().map((i) => i.id),
    ['aa02'],
    'the unacknowledged copy stays past its age',
  );
});

t.test(
  'pressure: acknowledged first; below the floor undelivered copies go, oldest first',
  async (t) => {
    // capacity 3000, pressure under 1500 free, floor 1000
    const s = await setup(t, 3000, 1500, 1000);
    await s.sink.append('aa01', 'clip', Buffer.alloc(600), true);
    s.advance(1000);
    await s.sink.append('aa02', 'clip', Buffer.alloc(600), true);
    s.advance(1000);
    await s.sink.append('aa03', 'clip', Buffer.alloc(600), true);
    await s.h.markDelivered(['aa03']);
    const r1 = await s.h.run(); // free 1200 < 1500: the acknowledged one goes
    t.same(
      r1.deleted.map((d) => [d.id, d.why]),
      [['aa03', 'disk-pressure']],
    );
    await s.sink.append('aa04', 'clip', Buffer.alloc(900), true); // free 1800 before, 900 after
    const r2 = await s.h.run();
    t.same(
      r2.undeliveredDeleted.map((d) => d.id),
      ['aa01'],
      'under the floor: the oldest undelivered copy goes, and is reported',
    );
    t.ok(r2.freeBytesAfter >= 1000, `above the floor again (${r2.freeBytesAfter})`);
  },
);

t.test('a dropped item loses its local copy too', async (t) => {
  const s = await setup(t, 1_000_000, 1000, 500);
  await s.sink.append('aa01', 'clip', Buffer.alloc(100), true);
  await s.h.discard(['aa01', 'not-kept']);
  t.same(s.h.store.items(), []);
  await t.rejects(stat(join(s.dir, 'clips', 'aa01.vgi')), { code: 'ENOENT' });
  t.same(await readdir(join(s.dir, 'clips')), []);
});

t.test('start runs at once and on the schedule; stop ends it', async (t) => {
  const s = await setup(t, 1_000_000, 1000, 500);
  s.h.start();
  t.teardown(() => s.h.stop());
  await s.h.run(); // shares (or follows) the first scheduled run
  t.ok(s.backlogRuns() >= 1);
  t.match(s.h.status(), { runs: Number, items: 0 });
  await s.h.stop();
});

/** Records of the given sizes, each as three parts (header, ciphertext, tag). */
function recs(...sizes: number[]): Buffer[][] {
  return sizes.map((n, i) => [Buffer.alloc(5, i), Buffer.alloc(n, i + 1), Buffer.alloc(16, i + 2)]);
}

t.test(
  'appendParts: the copy is written as the item arrives and exists only once it is complete',
  async (t) => {
    const calls: { id: string; kind: string; bytes: Buffer; final: boolean }[] = [];
    const inner: CiphertextSink = {
      append: (id, kind, bytes, final) => {
        calls.push({ id, kind, bytes: Buffer.from(bytes), final });
        return Promise.resolve();
      },
      appendParts: (id, kind, records, final) => {
        calls.push({ id, kind, bytes: Buffer.concat(records.flat()), final });
        return Promise.resolve();
      },
    };
    const s = await setup(t, 1_000_000, 1000, 500, inner);
    const head = Buffer.alloc(100, 9);
    const gop = recs(300, 200);
    await s.sink.append('aa01', 'clip', head, false);
    await s.sink.appendParts?.('aa01', 'clip', gop, false);
    const during = await readdir(join(s.dir, 'clips'));
    t.equal(during.length, 1, 'one file while the item is written');
    t.ok(during[0]?.startsWith('.') && during[0].endsWith('.tmp'), 'a temp, not the copy');
    t.same(s.h.store.items(), [], 'nothing indexed before the end');
    const end = Buffer.alloc(40, 8);
    await s.sink.append('aa01', 'clip', end, true);
    const whole = Buffer.concat([head, ...gop.flat(), end]);
    t.same(await readFile(join(s.dir, 'clips', 'aa01.vgi')), whole, 'the copy, byte for byte');
    t.same(await readdir(join(s.dir, 'clips')), ['aa01.vgi']);
    t.same(
      s.h.store.items().map((i) => [i.id, i.bytes]),
      [['aa01', whole.length]],
    );
    t.same(Buffer.concat(calls.map((c) => c.bytes)), whole, 'the upload got the same bytes');
    t.same(
      calls.map((c) => c.final),
      [false, false, true],
      'parts went on as parts (one call for the GOP)',
    );
    // live passes through as parts, nothing kept
    await s.sink.appendParts?.('cc01', 'live', recs(10), true);
    t.equal(calls.at(-1)?.kind, 'live');
    t.same(await readdir(join(s.dir, 'clips')), ['aa01.vgi']);
  },
);

t.test(
  'appendParts to a sink without parts: one append per record, the last one final',
  async (t) => {
    const s = await setup(t, 1_000_000, 1000, 500);
    await s.sink.appendParts?.('bb01', 'thumbnail', recs(10, 20, 30), true);
    t.same(s.forwarded, ['thumbnail:bb01'], 'ended once');
    t.equal((await stat(join(s.dir, 'thumbnails', 'bb01.vgi'))).size, 60 + 3 * 21);
  },
);

t.test(
  'an item whose upload fails, or that the backlog dropped while open, keeps no copy',
  async (t) => {
    let fail = false;
    const inner: CiphertextSink = {
      append: () => (fail ? Promise.reject(new Error('disk full')) : Promise.resolve()),
      appendParts: () => (fail ? Promise.reject(new Error('disk full')) : Promise.resolve()),
    };
    const s = await setup(t, 1_000_000, 1000, 500, inner);
    await s.sink.append('aa01', 'clip', Buffer.alloc(100), false);
    fail = true;
    await t.rejects(s.sink.appendParts!('aa01', 'clip', recs(50), false), /disk full/);
    t.same(await readdir(join(s.dir, 'clips')), [], 'the temp went with the failed item');
    fail = false;
    await s.sink.append('aa02', 'clip', Buffer.alloc(100), false);
    await s.h.discard(['aa02']);
    await s.sink.append('aa02', 'clip', Buffer.alloc(10), true);
    t.same(await readdir(join(s.dir, 'clips')), [], 'a dropped item keeps no copy');
    t.same(s.h.store.items(), []);
  },
);

t.test('a copy a crash interrupted is removed when retention opens', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-hub-retention-');
  t.teardown(cleanup);
  const fs = new DurableFs();
  const w = await fs.createAtomic(join(dir, 'clips', 'aa01.vgi'));
  await w.append([Buffer.alloc(1000)]);
  // (the process dies here: no commit, no discard)
  t.equal((await readdir(join(dir, 'clips'))).length, 1);
  const h = await HubRetention.open({
    root: dir,
    fs,
    stats: () => Promise.resolve({ totalBytes: 1e9, freeBytes: 1e9 }),
    logger: new MemoryLogger(),
    policy: {
      classes: {
        clips: { maxAgeDays: 30 },
        thumbnails: { maxAgeDays: 10 },
        pending: { maxAgeDays: 7 },
      },
      minFreeBytes: 1000,
      criticalFreeBytes: 500,
    },
    intervalMs: 3_600_000,
  });
  t.same(await readdir(join(dir, 'clips')), []);
  t.same(h.store.items(), []);
  await w.discard();
});
