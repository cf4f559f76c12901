import t from 'tap';
import { catchUpFrom } from '../../../firmware/mls/heartbeat.js';
import type { JournalRecord } from '../../../firmware/mls/journal.js';
import type { GroupKind } from '../../../protocol/mls-profile.js';

const A = 'aaaaaaaa';
const B = 'bbbbbbbb';

function rec(seq: number, group: GroupKind, epochs: Record<string, number>): JournalRecord {
  return {
    v: 1,
    seq,
    itemId: seq.toString(16).padStart(32, '0'),
    group,
    createdAt: seq,
    entries: Object.entries(epochs).map(([phoneId, epoch]) => ({
      phoneId,
      epoch: String(epoch),
      handshake: `hs-${phoneId.slice(0, 1)}-${group}-${String(epoch)}`,
    })),
  };
}

// Journal order is not epoch order: records 3 and 2 swapped on purpose.
const journal = [
  rec(1, 'motion', { [A]: 5, [B]: 2 }),
  rec(3, 'motion', { [A]: 7, [B]: 4 }),
  rec(2, 'motion', { [A]: 6, [B]: 3 }),
  rec(4, 'thumbnail', { [A]: 6 }),
];

t.test('the missing handshakes of one phone and group, in epoch order', async (t) => {
  t.same(catchUpFrom(journal, A, 'motion', 4n, 7n), [
    { group: 'motion', epoch: '5', handshake: 'hs-a-motion-5' },
    { group: 'motion', epoch: '6', handshake: 'hs-a-motion-6' },
    { group: 'motion', epoch: '7', handshake: 'hs-a-motion-7' },
  ]);
  t.same(catchUpFrom(journal, B, 'motion', 3n, 4n), [
    { group: 'motion', epoch: '4', handshake: 'hs-b-motion-4' },
  ]);
  t.same(catchUpFrom(journal, A, 'thumbnail', 5n, 6n), [
    { group: 'thumbnail', epoch: '6', handshake: 'hs-a-thumbnail-6' },
  ]);
});

t.test('nothing to catch up: an empty list, not a desync', async (t) => {
  t.same(catchUpFrom(journal, A, 'motion', 7n, 7n), []);
});

t.test('a pruned commit anywhere in the range means no catch-up at all', async (t) => {
  t.equal(catchUpFrom(journal, A, 'motion', 3n, 7n), undefined, 'epoch 4 is gone');
  t.equal(catchUpFrom(journal, A, 'motion', 4n, 8n), undefined, 'epoch 8 never journalled');
  const gap = journal.filter((r) => r.seq !== 2);
  t.equal(catchUpFrom(gap, A, 'motion', 4n, 7n), undefined, 'epoch 6 pruned');
  t.equal(catchUpFrom(journal, A, 'config', 0n, 1n), undefined, 'another group');
});
