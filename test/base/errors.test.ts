import t from 'tap';
import { CodedError, ValidationError, VigilError, reasonOf } from '../../base/errors.js';

type DemoCode = 'EDEMO_ONE' | 'EDEMO_TWO';
class DemoError extends CodedError<DemoCode> {}

void t.test('a coded error carries its code, its class name and its cause', async (t) => {
  const cause = new Error('low level');
  const e = new DemoError('EDEMO_TWO', 'demo failed', { cause });
  t.ok(e instanceof VigilError);
  t.ok(e instanceof DemoError);
  t.equal(e.code, 'EDEMO_TWO');
  t.equal(e.name, 'DemoError');
  t.equal(e.message, 'demo failed');
  t.equal(e.cause, cause);
  t.match(String(e.stack), /^DemoError: demo failed/);
});

void t.test('ValidationError and reasonOf', async (t) => {
  const v = new ValidationError('bad input');
  t.equal(v.code, 'EVALIDATION');
  t.equal(v.name, 'ValidationError');
  t.equal(reasonOf(v), 'bad input');
  t.equal(reasonOf('plain'), 'plain');
});
