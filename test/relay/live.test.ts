import t from 'tap';
import { LiveWindow } from '../../relay/live.js';

const rec = (n: number, c = 'x'): Buffer => Buffer.from(c.repeat(n));

t.test('per-device window: header and init segment stay, old middle records go', async (t) => {
  const w = new LiveWindow({ windowBytes: 300, totalBytes: 10_000, idleMs: 1000 });
  for (let i = 0; i < 6; i++) w.append('d', 'live-1', i, i === 5, rec(100));
  const info = w.info('d');
  t.equal(info.next, 6);
  t.equal(info.complete, true);
  t.equal(w.next('d', undefined, undefined)?.index, 0, 'header kept');
  t.equal(w.next('d', 'live-1', 0)?.index, 1, 'init segment kept');
  t.equal(w.next('d', 'live-1', 1)?.index, 5, 'middle records evicted to fit the window');
  t.equal(w.totalBytes, 300);
  w.append('d', 'live-2', 0, false, rec(10));
  t.equal(w.totalBytes, 10, 'a new live item replaces the old one');
  t.equal(w.next('e', undefined, undefined), undefined, 'no live item for another device');
});

t.test(
  'a global cap over all devices: idle items, then the largest window, then refusal',
  async (t) => {
    let now = 0;
    const w = new LiveWindow({ windowBytes: 1000, totalBytes: 1000, idleMs: 500 }, () => now);
    for (let i = 0; i < 4; i++) w.append('a', 'la', i, false, rec(100)); // 400
    now += 600; // a is idle now
    for (let i = 0; i < 5; i++) w.append('b', 'lb', i, false, rec(100)); // 500
    t.equal(w.totalBytes, 900);
    w.append('c', 'lc', 0, false, rec(100)); // 1000: fits exactly
    t.equal(w.totalBytes, 1000);
    w.append('c', 'lc', 1, false, rec(100));
    t.equal(w.info('a').itemId, null, 'the idle live item was dropped whole');
    t.equal(w.totalBytes, 700);
    // no idle item left: middle records of the largest window (b) go, oldest first
    for (let i = 2; i < 6; i++) w.append('c', 'lc', i, false, rec(100));
    t.ok(w.totalBytes <= 1000, `total ${w.totalBytes} within the cap`);
    t.equal(
      w.next('b', 'lb', 1)?.index,
      3,
      'b (the largest, first of equals) lost its oldest middle record',
    );
    t.equal(w.next('c', 'lc', 4)?.index, 5, 'c kept its newest record');
    t.equal(w.next('b', undefined, undefined)?.index, 0, "b's header survives");
    // when only headers are left, a new record is refused and nothing else changes
    const tight = new LiveWindow({ windowBytes: 1000, totalBytes: 300, idleMs: 500 }, () => now);
    tight.append('a', 'la', 0, false, rec(100));
    tight.append('a', 'la', 1, false, rec(100));
    tight.append('b', 'lb', 0, false, rec(100));
    t.throws(() => tight.append('b', 'lb', 1, false, rec(100)), { code: 'ELIVEFULL', status: 503 });
    t.equal(tight.totalBytes, 300);
    t.equal(tight.info('b').next, 1, 'the refused record was not taken');
    // the same record again (a retry) adds nothing and is accepted
    t.equal(tight.append('a', 'la', 1, false, rec(100)).next, 2);
  },
);
