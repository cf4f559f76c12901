// The relay client's network failures: RelayUnreachable names what lies under "request failed".
// The relay's own answers are exercised against the real relay in test/relay/.
import t from 'tap';
import { reasonOf } from '../../base/errors.js';
import { MemoryLogger } from '../../base/logger.js';
import { HttpError } from '../../base/http.js';
import type { HttpRequester } from '../../base/http.js';
import { RelayClient, RelayHttpError, RelayUnreachable } from '../../protocol/relay-client.js';
import { freePort } from '../../dev/fixtures/net.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** base/http.ts's shape: HttpError("request failed") with the socket's or TLS layer's error as cause. */
const requestFailed = (cause: unknown): HttpError =>
  new HttpError('EHTTP_FAILED', 'request failed', { cause });
const coded = (message: string, code: string): Error => Object.assign(new Error(message), { code });
const failingHttp =
  (err: unknown): HttpRequester =>
  () =>
    Promise.reject(err instanceof Error ? err : new Error(String(err)));

t.test('a closed loopback port: ECONNREFUSED in the one-line message and the log', async (t) => {
  const port = await freePort();
  const url = `http://127.0.0.1:${String(port)}`;
  const client = new RelayClient({ url });
  let err: unknown;
  try {
    await client.health();
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof RelayUnreachable, 'RelayUnreachable');
  t.equal(reasonOf(err), `relay ${url} unreachable: request failed (ECONNREFUSED)`);
  t.match(err, { code: 'EUNREACHABLE' });
  // both ways the hub logs it: the error itself, and its one-line reason
  const log = new MemoryLogger();
  log.warn('relay meeting failed; retrying', { error: err });
  log.warn('unlock channel: relay unreachable; retrying', { err: reasonOf(err) });
  t.equal(log.lines.length, 2);
  for (const line of log.lines) t.match(line, /unreachable: request failed \(ECONNREFUSED\)/);
});

t.test('other causes: name resolution, TLS, timeouts, several addresses', async (t) => {
  const cases: [string, unknown, string][] = [
    [
      'DNS',
      requestFailed(coded('getaddrinfo ENOTFOUND relay.invalid', 'ENOTFOUND')),
      'request failed (ENOTFOUND)',
    ],
    [
      'expired certificate',
      requestFailed(coded('certificate has expired', 'CERT_HAS_EXPIRED')),
      'request failed (CERT_HAS_EXPIRED: certificate has expired)',
    ],
    [
      'self-signed certificate',
      requestFailed(coded('self-signed certificate', 'DEPTH_ZERO_SELF_SIGNED_CERT')),
      'request failed (DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate)',
    ],
    [
      'connect timeout',
      requestFailed(coded('connect ETIMEDOUT 192.0.2.1:443', 'ETIMEDOUT')),
      'request failed (ETIMEDOUT)',
    ],
    [
      'the request deadline',
      new DOMException('The operation was aborted due to timeout', 'TimeoutError'),
      'The operation was aborted due to timeout (ETIMEDOUT)',
    ],
    [
      'IPv6 and IPv4 both refused',
      requestFailed(
        new AggregateError([
          coded('connect ECONNREFUSED ::1:8080', 'ECONNREFUSED'),
          coded('connect ECONNREFUSED 127.0.0.1:8080', 'ECONNREFUSED'),
        ]),
      ),
      'request failed (ECONNREFUSED)',
    ],
    ['no cause at all', new HttpError('EHTTP_FAILED', 'request failed'), 'request failed'],
  ];
  for (const [what, thrown, reason] of cases) {
    const client = new RelayClient({
      url: 'https://relay.example.net',
      http: failingHttp(thrown),
    });
    await t.rejects(
      client.health(),
      {
        name: 'RelayUnreachable',
        message: `relay https://relay.example.net unreachable: ${reason}`,
      },
      what,
    );
  }
});

t.test("the caller's own abort is passed through, not called unreachable", async (t) => {
  const ctrl = new AbortController();
  const abort = new DOMException('stopped', 'AbortError');
  const client = new RelayClient({
    url: 'https://relay.example.net',
    http: () => {
      ctrl.abort();
      return Promise.reject(abort);
    },
  });
  await t.rejects(client.list({ signal: ctrl.signal }), abort);
});

t.test('a redirect is an error that names where it points, not followed', async (t) => {
  const s = createServer((_req, res) => {
    res.writeHead(301, { location: 'https://relay.example.net/' }).end();
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    s.closeAllConnections();
    s.close();
  });
  const url = `http://127.0.0.1:${String((s.address() as AddressInfo).port)}`;
  const err = await new RelayClient({ url }).phones().catch((e: unknown) => e);
  t.ok(err instanceof RelayHttpError);
  t.match(err, { status: 301, relayCode: 'EREDIRECT' });
  t.match(reasonOf(err), /redirected to https:\/\/relay\.example\.net\/; configure/);
});
