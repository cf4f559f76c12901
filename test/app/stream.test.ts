import t from 'tap';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { StreamReassembler } from '../../app/stream.js';
import { openPush } from '../../app/push.js';
import type { Inbound } from '../../app/e2ee/phone.js';

t.test('reassembly: out of order, duplicates, a restart in the middle', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-app-stream-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fs = new DurableFs();
  const item = Buffer.from('0123456789abcdefghij');
  const frag = (from: number, to: number, final = false) => ({
    kind: 'clip' as const,
    id: 'ab12',
    offset: from,
    final,
    bytes: item.subarray(from, to),
  });
  let r = await StreamReassembler.open(dir, fs);
  await r.add(frag(0, 8));
  await r.add(frag(0, 8)); // the hub sent the slot again
  await r.add(frag(4, 12)); // overlapping: only the new part is kept
  t.equal((await r.prefix('ab12')).toString(), '0123456789ab');
  t.notOk(r.complete('ab12'));
  await r.add({ kind: 'notice', id: 'n1', offset: 0, final: true, bytes: Buffer.from('{}') });
  t.same(r.pending(), ['ab12'], 'notices are not kept here');
  // restart: everything written so far is back
  r = await StreamReassembler.open(dir, fs);
  t.equal((await r.prefix('ab12')).toString(), '0123456789ab');
  await r.add(frag(16, 20, true)); // a gap: not complete yet
  t.notOk(r.complete('ab12'));
  t.equal((await r.prefix('ab12')).toString(), '0123456789ab', 'the prefix stops at the gap');
  await r.add(frag(12, 16));
  t.ok(r.complete('ab12'));
  t.equal((await r.take('ab12')).toString(), item.toString());
  await r.drop('ab12');
  t.same(r.pending(), []);
  t.same(await readdir(dir), [], 'nothing left on disk');
});

t.test('a cover push shows nothing; a notice record shows its notice', async (t) => {
  const push = (seq: number) =>
    Buffer.from(JSON.stringify({ v: 1, t: 'notice', seq, group: 'notification', mls: 'AAAA' }));
  const acked: number[] = [];
  const cover: Inbound = { kind: 'stream-record', fragments: [], notices: [] };
  const o = await openPush(push(5), {
    receive: () => Promise.resolve(cover),
    ack: (s) => {
      acked.push(s);
      return Promise.resolve();
    },
  });
  t.equal(o.cover, true);
  t.same(acked, [5], 'the cover record is acknowledged like any notice');
  const n = {
    t: 'notice' as const,
    at: 1_790_000_000_000,
    kind: 'motion',
    itemId: 'aa'.repeat(16),
    text: 'motion detected',
  };
  const real = await openPush(push(6), {
    receive: () => Promise.resolve({ kind: 'stream-record', fragments: [], notices: [n] }),
  });
  t.notOk(real.cover);
  t.equal(real.notice?.text, 'motion detected');
  t.equal(real.trusted, true);
});
