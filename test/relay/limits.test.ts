import t from 'tap';
import { Lockout, RateLimiter } from '../../relay/limits.js';

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
  l.succeed('x');
  t.equal(l.lockedFor('x'), 5000, 'a success does not unlock a locked address');
  t.equal(l.lockedFor('y'), 0);
  now += 5000;
  t.equal(l.lockedFor('x'), 0, 'unlocked after the lock time');
  l.succeed('x');
  t.equal(l.fail('x'), false, 'counting starts over');
});
