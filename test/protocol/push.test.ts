import t from 'tap';
import {
  PUSH_MAX_PLAINTEXT,
  PushRegistrationBody,
  decodePushMessage,
  encodePushMessage,
} from '../../protocol/push.js';
import { newSubscriptionKeys } from '../fixtures/web-push.js';

t.test('push messages: frozen bytes both ways, strict, bounded', (t) => {
  const notice = { v: 1, t: 'notice', seq: 12, group: 'notification', mls: 'AAEC' } as const;
  const bytes = '{"v":1,"t":"notice","seq":12,"group":"notification","mls":"AAEC"}';
  t.equal(encodePushMessage(notice)?.toString('utf8'), bytes);
  t.same(decodePushMessage(Buffer.from(bytes)), { ok: true, value: notice });
  const unseen = '{"v":1,"t":"unseen","deviceId":"dev-1234","since":1000,"at":2000}';
  t.same(decodePushMessage(Buffer.from(unseen)), {
    ok: true,
    value: { v: 1, t: 'unseen', deviceId: 'dev-1234', since: 1000, at: 2000 },
  });
  t.same(decodePushMessage(Buffer.from('nope')), { ok: false, reason: 'push message is not JSON' });
  t.same(decodePushMessage(Buffer.from('{"v":1,"t":"notice","seq":0,"group":"n","mls":"A"}')), {
    ok: false,
    reason: 'push message: seq: Too small: expected number to be >=1',
  });
  t.match(decodePushMessage(Buffer.alloc(PUSH_MAX_PLAINTEXT + 1)), {
    ok: false,
    reason: /limit is 3800/,
  });
  t.equal(encodePushMessage({ ...notice, mls: 'A'.repeat(PUSH_MAX_PLAINTEXT - 10) }), undefined);
  t.end();
});

t.test('registration body: the PushSubscription JSON, strictly', (t) => {
  const k = newSubscriptionKeys().json;
  t.ok(PushRegistrationBody.safeParse({ endpoint: 'https://x.example/1', keys: k }).success);
  t.notOk(
    PushRegistrationBody.safeParse({ endpoint: 'https://x.example/1', keys: { ...k, x: 1 } })
      .success,
  );
  t.notOk(PushRegistrationBody.safeParse({ endpoint: '', keys: k }).success);
  t.end();
});
