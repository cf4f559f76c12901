import t from 'tap';
import { NoticeFeed, openPush, registrationOf } from '../../app/push.js';
import { newSubscriptionKeys } from '../fixtures/web-push.js';

t.test('CLI registration: checked before sending, one-line errors', (t) => {
  const k = newSubscriptionKeys().json;
  const m = (o: Record<string, string>): string => {
    try {
      registrationOf(new Map(Object.entries(o)));
      return 'ok';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.equal(m({ '--endpoint': 'https://p.example/1', '--p256dh': k.p256dh, '--auth': k.auth }), 'ok');
  t.equal(
    m({ '--endpoint': 'https://p.example/1' }),
    'push register needs --endpoint, --p256dh and --auth',
  );
  t.equal(
    m({ '--endpoint': 'https://p.example/1', '--p256dh': k.p256dh, '--auth': 'AAAA' }),
    'push register: auth must be 16 bytes, got 3',
  );
  t.end();
});

t.test('notice feed: a notice arriving by push and by mailbox is listed once', (t) => {
  const f = new NoticeFeed();
  const n = {
    t: 'notice',
    at: 5,
    kind: 'motion',
    itemId: 'ab12cd34',
    text: 'motion detected',
  } as const;
  const a = f.addNotice(n);
  const b = f.addNotice({ ...n });
  t.equal(a.id, b.id);
  f.add({ source: 'relay', trusted: false, title: 'x', body: 'y', at: 6 });
  t.same(
    f.since(0).notices.map((e) => e.source),
    ['hub', 'relay'],
  );
  t.same(
    f.since(1).notices.map((e) => e.id),
    [2],
  );
  t.equal(f.since(0).last, 2);
  t.end();
});

t.test('openPush refuses what is not ours', async (t) => {
  const receive = () => Promise.reject(new Error('bad mac'));
  await t.rejects(openPush(Buffer.from('x'), { receive }), {
    code: 'EPUSH',
    message: 'push message is not JSON',
  });
  await t.rejects(
    openPush(Buffer.from('{"v":1,"t":"notice","seq":1,"group":"notification","mls":"AAAA"}'), {
      receive,
    }),
    { code: 'EPUSH', message: /did not open with MLS/ },
  );
  await t.rejects(
    openPush(Buffer.from('{"v":1,"t":"notice","seq":1,"group":"notification","mls":"AAAA"}'), {
      receive: () => Promise.resolve({ kind: 'removed', phoneId: 'ab12cd34' } as never),
    }),
    { message: 'push carried a hub removed message, not a notice' },
  );
});
