import t from 'tap';
import {
  MAX_ROSTER,
  PHONES_REQUEST_BODY,
  PhonesRequest,
  decodeRoster,
  encodeRoster,
} from '../../protocol/phone-roster.js';

t.test('the roster round-trips and bad bodies get a specific reason', (t) => {
  const r = { v: 1 as const, phones: [{ phoneId: 'ab12', admin: true, pairedAt: 5 }] };
  t.same(decodeRoster(encodeRoster(r)), { ok: true, value: r });
  t.same(
    Buffer.from(encodeRoster(r)).toString(),
    '{"v":1,"phones":[{"phoneId":"ab12","admin":true,"pairedAt":5}]}',
    'the documented wire form',
  );
  t.equal(
    PhonesRequest.safeParse(JSON.parse(Buffer.from(PHONES_REQUEST_BODY).toString())).success,
    true,
  );
  const bad = (text: string) => {
    const d = decodeRoster(Buffer.from(text));
    return d.ok ? 'accepted' : d.error.message;
  };
  t.equal(bad('nope'), 'phones: body is not JSON');
  t.match(
    bad('{"v":1,"phones":[{"phoneId":"XY","admin":true,"pairedAt":1}]}'),
    /^phones: phones\.0\.phoneId: /,
  );
  t.match(bad('{"v":2,"phones":[]}'), /^phones: v: /);
  t.match(bad('{"v":1,"phones":[],"extra":1}'), /^phones: body: /);
  const many = Array.from({ length: MAX_ROSTER + 1 }, (_, i) => ({
    phoneId: i.toString(16).padStart(2, '0'),
    admin: false,
    pairedAt: i,
  }));
  t.match(bad(JSON.stringify({ v: 1, phones: many })), /^phones: phones: /);
  t.throws(() => encodeRoster({ v: 1, phones: [{ phoneId: 'no', admin: true, pairedAt: 1 }] }));
  t.end();
});
