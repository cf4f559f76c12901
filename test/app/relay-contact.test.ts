import t from 'tap';
import { RelayContact } from '../../app/relay-contact.js';

t.test('last contact, and unreachable since the first failure after it', (t) => {
  let now = 1000;
  const c = new RelayContact(() => now);
  t.same(c.status(), { lastContactAt: null, unreachableSince: null, reason: null });
  c.reached();
  now = 2000;
  c.failed('relay unreachable: ECONNREFUSED');
  now = 3000;
  c.failed('relay unreachable: ETIMEDOUT');
  t.same(
    c.status(),
    { lastContactAt: 1000, unreachableSince: 2000, reason: 'relay unreachable: ETIMEDOUT' },
    'the outage starts at the first failure; the reason is the latest',
  );
  now = 4000;
  c.reached();
  t.same(c.status(), { lastContactAt: 4000, unreachableSince: null, reason: null });
  t.end();
});
