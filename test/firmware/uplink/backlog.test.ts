import t from 'tap';
import { planBacklogDrops } from '../../../firmware/uplink/backlog.js';
import type { QueuedItem } from '../../../firmware/uplink/queue.js';

const DAY = 86_400_000;
const NOW = 1_800_000_000_000;
let seq = 0;
function item(
  itemId: string,
  kind: 'clip' | 'thumbnail',
  bytes: number,
  extra: Partial<QueuedItem> = {},
): QueuedItem {
  seq += 10;
  return {
    itemId,
    kind,
    bytes,
    firstOffset: 0,
    firstSeq: seq,
    queuedAt: NOW - 1000,
    complete: true,
    ...extra,
  };
}

t.test('under the cap nothing goes', async (t) => {
  const items = [item('a', 'clip', 100), item('b', 'thumbnail', 10)];
  t.same(planBacklogDrops(items, { maxBytes: 110 }, { now: NOW }), []);
  t.same(planBacklogDrops([], { maxBytes: 0 }, { now: NOW }), []);
});

t.test('over the cap: oldest clips first, thumbnails only when no clip may go', async (t) => {
  const items = [
    item('t1', 'thumbnail', 10),
    item('c1', 'clip', 100),
    item('t2', 'thumbnail', 10),
    item('c2', 'clip', 100),
    item('c3', 'clip', 100),
  ];
  const one = planBacklogDrops(items, { maxBytes: 250 }, { now: NOW });
  t.same(
    one.map((d) => [d.itemId, d.why]),
    [['c1', 'backlog-bytes']],
  );
  const incoming = planBacklogDrops(items, { maxBytes: 250 }, { now: NOW, incomingBytes: 100 });
  t.same(
    incoming.map((d) => d.itemId),
    ['c1', 'c2'],
    'the bytes about to be queued count',
  );
  const all = planBacklogDrops(items, { maxBytes: 10 }, { now: NOW });
  t.same(
    all.map((d) => d.itemId),
    ['c1', 'c2', 'c3', 't1'],
    'then thumbnails, oldest first, until it fits',
  );
});

t.test('never cut an item: unfinished, partly sent or in flight items stay', async (t) => {
  const items = [
    item('sending', 'clip', 100),
    item('partly-sent', 'clip', 100, { firstOffset: 4096 }),
    item('recording', 'clip', 100, { complete: false }),
    item('ok', 'clip', 100),
  ];
  const d = planBacklogDrops(items, { maxBytes: 0 }, { now: NOW, busy: new Set(['sending']) });
  t.same(
    d.map((x) => x.itemId),
    ['ok'],
  );
});

t.test('by age: items queued before the cutoff go even under the cap', async (t) => {
  const items = [
    item('old', 'clip', 10, { queuedAt: NOW - 8 * DAY }),
    item('old-thumb', 'thumbnail', 10, { queuedAt: NOW - 8 * DAY }),
    item('legacy', 'clip', 10, { queuedAt: undefined }),
    item('new', 'clip', 10, { queuedAt: NOW - 6 * DAY }),
  ];
  const d = planBacklogDrops(items, { maxBytes: 1000, maxAgeMs: 7 * DAY }, { now: NOW });
  t.same(
    d.map((x) => [x.itemId, x.why]),
    [
      ['old', 'backlog-age'],
      ['old-thumb', 'backlog-age'],
    ],
    'an item without a queue time (an older hub) is not aged out',
  );
});
