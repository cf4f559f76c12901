import t from 'tap';
import {
  CodedError,
  networkCause,
  ValidationError,
  VigilError,
  reasonOf,
} from '../../base/errors.js';

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

void t.test('networkCause: the code under "fetch failed", on the cause chain', async (t) => {
  const coded = (message: string, code: string): Error =>
    Object.assign(new Error(message), { code });
  const refused = coded('connect ECONNREFUSED 127.0.0.1:1', 'ECONNREFUSED');
  t.equal(networkCause(new TypeError('fetch failed', { cause: refused })), 'ECONNREFUSED');
  t.equal(
    networkCause(
      new TypeError('fetch failed', { cause: new Error('wrapped', { cause: refused }) }),
    ),
    'ECONNREFUSED',
    'deeper down',
  );
  t.equal(
    networkCause(coded('Hostname/IP does not match\n  altnames', 'ERR_TLS_CERT_ALTNAME_INVALID')),
    'ERR_TLS_CERT_ALTNAME_INVALID: Hostname/IP does not match altnames',
    'not a system code: its message too, on one line',
  );
  t.equal(networkCause(new AggregateError([new Error('no code'), refused])), 'ECONNREFUSED');
  t.equal(networkCause(new DOMException('aborted due to timeout', 'TimeoutError')), 'ETIMEDOUT');
  t.equal(networkCause(new TypeError('fetch failed')), undefined, 'nothing to name');
  t.equal(networkCause('fetch failed'), undefined, 'not an error');
  const loop = new Error('loop');
  (loop as { cause?: unknown }).cause = loop;
  t.equal(networkCause(loop), undefined, 'a cause cycle ends');
});
