import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { SILENT } from '../../../base/logger.js';
import { UplinkQueue } from '../../../firmware/uplink/queue.js';
import { planOf, privacySchema } from '../../../firmware/uplink/privacy.js';
import { StreamSender, planFragments } from '../../../firmware/uplink/stream.js';
import { decodeStreamRecord, type Fragment } from '../../../protocol/stream-record.js';
import { VirtualClock } from '../../../dev/fixtures/privacy-day.js';

interface Posted {
  at: number;
  group: string;
  to: string | undefined;
  record: Uint8Array;
}

async function setup(t: Test, privacy: object, opts: { failPosts?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-stream-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const queue = await UplinkQueue.open(dir, new DurableFs());
  const clock = new VirtualClock(1_000_000);
  const posted: Posted[] = [];
  let fail = opts.failPosts ?? 0;
  const plan = planOf(privacySchema.parse(privacy));
  if (!plan) throw new Error('mode off');
  const sender = new StreamSender({
    plan,
    queue,
    clock,
    logger: SILENT,
    peers: {
      recipients: () => [{ phoneId: 'p1', relayPhoneId: 'r1' }],
      // a stand-in for MLS: the test reads the plaintext back
      seal: (_id, _g, rec) => Promise.resolve(rec),
    },
    post: (_itemId, group, bytes, to) => {
      if (fail > 0) {
        fail--;
        return Promise.reject(new Error('relay away'));
      }
      posted.push({ at: clock.now(), group, to, record: bytes });
      return Promise.resolve();
    },
  });
  const ac = new AbortController();
  const running = sender.run(ac.signal);
  t.teardown(async () => {
    ac.abort();
    await running;
  });
  const lanes = plan.scheduledNotices ? 2 : 1;
  await clock.waitArmed(lanes);
  /** Move to the next due slot and wait until every lane is waiting again. */
  const step = async (): Promise<void> => {
    clock.advanceTo(clock.nextDue() ?? 0);
    await clock.waitArmed(lanes);
  };
  return { queue, clock, posted, sender, step };
}

function fragments(p: readonly Posted[]): Fragment[] {
  return p.flatMap((x) => {
    const d = decodeStreamRecord(x.record);
    if (!d.ok) throw new Error(d.reason);
    return d.value;
  });
}

t.test('planFragments: queue order (epoch order), a segment split at the record boundary', (t) => {
  const segs = [
    { seq: 2, itemId: 'th1', kind: 'thumbnail' as const, offset: 0, final: true, size: 30 },
    { seq: 1, itemId: 'clip1', kind: 'clip' as const, offset: 0, final: false, size: 40 },
    { seq: 3, itemId: 'clip1', kind: 'clip' as const, offset: 40, final: true, size: 100 },
  ];
  const p = planFragments(segs, new Map(), 150);
  t.same(
    p.map((x) => [x.seg.itemId, x.from, x.to]),
    [
      ['clip1', 0, 40],
      ['th1', 0, 30],
      ['clip1', 0, 150 - 40 - 30 - 3 * 11 - 5 - 3 - 5],
    ],
    "never reordered: a thumbnail shares its clip's epoch",
  );
  t.same(
    planFragments(segs, new Map([[1, 40]]), 80).map((x) => x.seg.itemId),
    ['th1', 'clip1'],
    'a taken segment is skipped',
  );
  t.end();
});

t.test(
  'constant-rate: one record per slot, covers when idle, items cut and reassembled',
  async (t) => {
    const { queue, posted, step, sender } = await setup(t, {
      mode: 'constant-rate',
      constantRate: { recordKiB: 1, slotSeconds: 10, noticeSlotSeconds: 30 },
    });
    await step();
    await step();
    t.ok(posted.length >= 2, 'idle slots still send');
    t.ok(
      posted.every((p) => fragments([p]).length === 0),
      'and they are covers',
    );
    const clip = Buffer.alloc(2500, 7);
    await queue.push('aa11', 'clip', clip.subarray(0, 1500), false);
    await queue.push('aa11', 'clip', clip.subarray(1500), true);
    sender.queueNotice({ at: 1, kind: 'motion', itemId: 'aa11aa11', text: 'motion detected' });
    while (queue.length > 0 || sender.status().pendingNotices > 0) await step();
    const sizes = new Set(posted.map((p) => `${p.group}:${p.record.length}`));
    t.same([...sizes].sort(), ['config:1024', 'notification:2048'], 'two fixed sizes');
    const dataTimes = posted.filter((p) => p.group === 'config').map((p) => p.at);
    t.ok(
      dataTimes.every((x, i) => i === 0 || x - (dataTimes[i - 1] ?? 0) === 10_000),
      'every 10 s',
    );
    t.ok(
      dataTimes.every((x) => x % 10_000 === 0),
      'on the slot grid',
    );
    const f = fragments(posted.filter((p) => p.group === 'config'));
    const bytes = Buffer.concat(f.filter((x) => x.id === 'aa11').map((x) => Buffer.from(x.bytes)));
    t.ok(bytes.equals(clip), 'the clip comes back whole, in order');
    t.ok(f.at(-1)?.final, 'its last fragment is final');
    const n = fragments(posted.filter((p) => p.group === 'notification')).filter(
      (x) => x.kind === 'notice',
    );
    t.equal(n.length, 1, 'the notice went in a notice record');
    t.match(Buffer.from(n[0]?.bytes ?? []).toString(), /"t":"notice"/);
    t.ok(
      posted.every((p) => p.to === 'r1'),
      'addressed to the phone',
    );
    t.ok(sender.status().coverRecords > 0);
  },
);

t.test('a slot that fails is sent again from the same bytes', async (t) => {
  const { queue, posted, step, sender } = await setup(
    t,
    {
      mode: 'constant-rate',
      notices: 'immediate',
      constantRate: { recordKiB: 1, slotSeconds: 10 },
    },
    { failPosts: 1 },
  );
  await queue.push('bb22', 'thumbnail', Buffer.alloc(300, 1), true);
  while (queue.length > 0) await step();
  t.equal(sender.status().failedSlots, 1);
  const f = fragments(posted);
  t.same(
    f.map((x) => [x.id, x.offset, x.bytes.length, x.final]),
    [['bb22', 0, 300, true]],
    'the thumbnail arrives once, after the failed slot',
  );
});

t.test('padding-buckets: idle slots send nothing; a batch leaves padded to a bucket', async (t) => {
  const { queue, posted, step } = await setup(t, {
    mode: 'padding-buckets',
    buckets: { slotMinutes: 1, sizesKiB: [1, 4] },
  });
  await step();
  t.equal(posted.length, 0, 'nothing at an idle slot');
  await queue.push('cc33', 'clip', Buffer.alloc(2000, 3), false);
  await step();
  t.equal(posted.length, 0, 'an item still being written waits');
  await queue.push('cc33', 'clip', Buffer.alloc(100, 3), true);
  await step();
  t.same(
    posted.map((p) => p.record.length),
    [4096],
    'one record of the smallest bucket that holds it',
  );
  t.equal(queue.length, 0);
  await queue.push('dd44', 'clip', Buffer.alloc(9000, 4), true);
  await step();
  t.same(
    posted.slice(1).map((p) => p.record.length),
    [4096, 4096, 1024],
    'larger than the largest bucket: several records, the last one padded to fit',
  );
  const f = fragments(posted.slice(1));
  t.equal(
    f.reduce((s, x) => s + x.bytes.length, 0),
    9000,
  );
});
