import t from 'tap';
import {
  DEFAULT_LIMITS,
  Lockout,
  RateLimiter,
  WindowCounter,
  requestTimeoutMs,
} from '../../relay/limits.js';

t.test('token bucket: burst, then the refill rate', async (t) => {
  let now = 0;
  const r = new RateLimiter(2, 3, () => now);
  t.same([r.take('a'), r.take('a'), r.take('a')], [0, 0, 0], 'burst of 3');
  t.equal(r.take('a'), 500, 'then wait for one token at 2/s');
  t.equal(r.take('b'), 0, 'keys are independent');
  now += 500;
  t.equal(r.take('a'), 0);
  t.ok(r.take('a') > 0);
});

t.test('lockout after N failures within the window, for the lock time', async (t) => {
  let now = 0;
  const l = new Lockout(3, 1000, 5000, () => now);
  t.equal(l.fail('x'), false);
  now += 2000; // the first failure ages out of the window
  t.equal(l.fail('x'), false);
  t.equal(l.fail('x'), false);
  t.equal(l.lockedFor('x'), 0);
  t.equal(l.fail('x'), true, 'third failure within the window locks');
  t.equal(l.lockedFor('x'), 5000);
  t.equal(l.lockedFor('y'), 0);
  now += 5000;
  t.equal(l.lockedFor('x'), 0, 'unlocked after the lock time');
  t.equal(l.fail('x'), false, 'counting starts over');
});

t.test('lockout: failures only age out; nothing else erases them', async (t) => {
  let now = 0;
  const l = new Lockout(10, 600_000, 900_000, () => now);
  // the probe's bypass: 9 failures, then (formerly) a success that reset the count
  for (let i = 0; i < 9; i++) t.equal(l.fail('a', 'rendezvous'), false);
  now += 1000;
  t.equal(l.fail('a', 'device:victim'), true, 'the 10th failure from the address locks it');
  t.ok(l.lockedFor('a') > 0);
});

t.test(
  'lockout per target: a guarded account costs a spread guesser an address per guess',
  async (t) => {
    let now = 0;
    const l = new Lockout(10, 1000, 5000, () => now, 3);
    t.equal(l.fail('a1', 'device:x'), false);
    t.equal(l.fail('a2', 'device:x'), false);
    t.equal(l.guardedFor('device:x'), 0);
    t.equal(l.fail('a3', 'device:x'), false, 'the 3rd failure on the target guards it');
    t.equal(l.guardedFor('device:x'), 5000);
    t.equal(l.lockedFor('a3'), 0, 'but does not lock the address that tipped it');
    t.equal(
      l.fail('a4', 'device:x'),
      true,
      'one failure against a guarded target locks the address',
    );
    t.equal(l.lockedFor('a4'), 5000);
    t.equal(l.fail('a5', 'device:y'), false, 'other targets are not guarded');
    t.equal(l.fail('a6'), false, 'failures without a target count per address only');
    now += 5000;
    t.equal(l.guardedFor('device:x'), 0, 'the guard ends after the lock time');
    t.equal(l.fail('a7', 'device:x'), false);
  },
);

t.test('window counter: N events per key per window', async (t) => {
  let now = 0;
  const c = new WindowCounter(2, 1000, () => now);
  t.equal(c.take('a'), 0);
  now += 100;
  t.equal(c.take('a'), 0);
  t.equal(c.take('a'), 900, 'the third waits until the first leaves the window');
  t.equal(c.take('b'), 0, 'keys are independent');
  now += 900;
  t.equal(c.take('a'), 0);
});

t.test('request timeout follows the largest append at the slowest accepted rate', async (t) => {
  const ms = requestTimeoutMs(DEFAULT_LIMITS);
  t.equal(
    ms,
    DEFAULT_LIMITS.headersTimeoutMs +
      (DEFAULT_LIMITS.maxAppendBytes / DEFAULT_LIMITS.minBodyBytesPerSec) * 1000,
  );
  t.ok(ms < 10 * 60_000, `well under the former 10 minutes (${ms} ms)`);
  t.equal(
    requestTimeoutMs({ ...DEFAULT_LIMITS, maxAppendBytes: 2 * DEFAULT_LIMITS.maxAppendBytes }) - ms,
    (DEFAULT_LIMITS.maxAppendBytes / DEFAULT_LIMITS.minBodyBytesPerSec) * 1000,
    'a larger append allows proportionally more time',
  );
});
