import t from 'tap';
import { CodedError } from '../../base/errors.js';
import { fail, ok, unwrap, type Result } from '../../base/result.js';

class DemoError extends CodedError<'EDEMO'> {}

function half(n: number): Result<number, 'EDEMO'> {
  return n % 2 === 0 ? ok(n / 2) : fail('EDEMO', `${String(n)} is odd`);
}

void t.test('ok carries the value, fail a code and a one-line reason', async (t) => {
  t.same(half(4), { ok: true, value: 2 });
  t.same(half(3), { ok: false, code: 'EDEMO', reason: '3 is odd' });
});

void t.test('unwrap returns the value or throws the boundary error', async (t) => {
  const toError = (code: 'EDEMO', reason: string): Error => new DemoError(code, reason);
  t.equal(unwrap(half(8), toError), 4);
  t.throws(() => unwrap(half(5), toError), {
    name: 'DemoError',
    code: 'EDEMO',
    message: '5 is odd',
  });
});
