import t from 'tap';
import { Mutex, isAborted, pause, sleep, untilAborted } from '../../base/async.js';

t.test('pause waits, and ends early (resolving) on abort', async (t) => {
  const ac = new AbortController();
  let done = false;
  const p = pause(60_000, ac.signal).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 20));
  t.equal(done, false, 'still waiting');
  ac.abort();
  await p;
  t.equal(done, true, 'resolved by the abort');
  t.equal(isAborted(ac.signal), true);
  await pause(10, ac.signal); // already aborted: resolves at once
  const live = new AbortController();
  let over = false;
  const waiting = pause(50, live.signal).then(() => (over = true));
  await new Promise((r) => setTimeout(r, 5));
  t.equal(over, false, 'a live signal keeps waiting');
  await waiting;
  t.equal(over, true);
  t.equal(isAborted(live.signal), false);
});

t.test('Mutex runs one task at a time, in order, and survives a failure', async (t) => {
  const m = new Mutex();
  const log: string[] = [];
  let inside = 0;
  let maxInside = 0;
  const task = (name: string, ms: number, fail = false) =>
    m.run(async () => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      log.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      log.push(`${name}-`);
      inside--;
      if (fail) throw new Error(`${name} failed`);
      return name;
    });
  const results = await Promise.allSettled([task('a', 30), task('b', 5, true), task('c', 1)]);
  t.same(log, ['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
  t.equal(maxInside, 1);
  t.same(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
});

t.test('sleep resolves after the wait and rejects with the abort reason', async (t) => {
  await sleep(5);
  const ac = new AbortController();
  const p = sleep(60_000, ac.signal);
  ac.abort(new Error('stop now'));
  await t.rejects(p, { message: 'stop now' });
  await t.rejects(sleep(1, ac.signal), { message: 'stop now' }, 'already aborted: rejects at once');
});

t.test('untilAborted resolves on the abort, or at once when already aborted', async (t) => {
  const ac = new AbortController();
  let done = false;
  const p = untilAborted(ac.signal).then(() => (done = true));
  await Promise.resolve();
  await Promise.resolve();
  t.equal(done, false, 'waits while the signal is live');
  ac.abort();
  await p;
  t.equal(done, true, 'resolved by the abort');
  await untilAborted(ac.signal); // already aborted: no listener would ever fire
  t.equal(isAborted(undefined), false, 'no signal is never aborted');
});
