import t from 'tap';
import type { Test } from 'tap';
import { readdir, stat } from 'node:fs/promises';
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

async function setup(t: Test, capacity: number, minFree: number, critical: number) {
  const { dir, cleanup } = await tempDir('vigil-hub-retention-');
  t.teardown(cleanup);
  let now = 1_800_000_000_000;
  const forwarded: string[] = [];
  const inner: CiphertextSink = {
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
