import t from 'tap';
import {
  PUSH_MAX_PLAINTEXT,
  PushRegistrationBody,
  decodePushMessage,
  encodePushMessage,
  padPushMessage,
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

t.test('padding: one size for notices whose seq differs in length; decodes unchanged', (t) => {
  const enc = (seq: number): Buffer =>
    padPushMessage(
      encodePushMessage({ v: 1, t: 'notice', seq, group: 'notification', mls: 'A'.repeat(2900) })!,
    );
  t.equal(enc(99).length, enc(100).length, 'seq 99 and 100 pad to the same length');
  t.equal(enc(99).length % 256, 0, 'a multiple of 256 bytes');
  t.same(decodePushMessage(enc(100)), {
    ok: true,
    value: { v: 1, t: 'notice', seq: 100, group: 'notification', mls: 'A'.repeat(2900) },
  });
  const big = Buffer.alloc(PUSH_MAX_PLAINTEXT - 5, 0x41);
  t.equal(padPushMessage(big).length, PUSH_MAX_PLAINTEXT, 'never past the limit');
  t.equal(padPushMessage(Buffer.alloc(512)).length, 512, 'an exact multiple stays as it is');
  t.end();
});
