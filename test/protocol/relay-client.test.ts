// The relay client's network failures: RelayUnreachable names what lies under "fetch failed".
// The relay's own answers are exercised against the real relay in test/relay/.
import t from 'tap';
import { reasonOf } from '../../base/errors.js';
import { MemoryLogger } from '../../base/logger.js';
import { RelayClient, RelayUnreachable } from '../../protocol/relay-client.js';
import { freePort } from '../../dev/fixtures/net.js';

/** undici's shape: TypeError("fetch failed") with the socket's or TLS layer's error as cause. */
const fetchFailed = (cause: unknown): TypeError => new TypeError('fetch failed', { cause });
const coded = (message: string, code: string): Error => Object.assign(new Error(message), { code });
const failingFetch =
  (err: unknown): typeof fetch =>
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
  t.equal(reasonOf(err), `relay ${url} unreachable: fetch failed (ECONNREFUSED)`);
  t.match(err, { code: 'EUNREACHABLE' });
  // both ways the hub logs it: the error itself, and its one-line reason
  const log = new MemoryLogger();
  log.warn('relay meeting failed; retrying', { error: err });
  log.warn('unlock channel: relay unreachable; retrying', { err: reasonOf(err) });
  t.equal(log.lines.length, 2);
  for (const line of log.lines) t.match(line, /unreachable: fetch failed \(ECONNREFUSED\)/);
});

t.test('other causes: name resolution, TLS, timeouts, several addresses', async (t) => {
  const cases: [string, unknown, string][] = [
    [
      'DNS',
      fetchFailed(coded('getaddrinfo ENOTFOUND relay.invalid', 'ENOTFOUND')),
      'fetch failed (ENOTFOUND)',
    ],
    [
      'expired certificate',
      fetchFailed(coded('certificate has expired', 'CERT_HAS_EXPIRED')),
      'fetch failed (CERT_HAS_EXPIRED: certificate has expired)',
    ],
    [
      'self-signed certificate',
      fetchFailed(coded('self-signed certificate', 'DEPTH_ZERO_SELF_SIGNED_CERT')),
      'fetch failed (DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate)',
    ],
    [
      'connect timeout',
      fetchFailed(coded('connect ETIMEDOUT 192.0.2.1:443', 'ETIMEDOUT')),
      'fetch failed (ETIMEDOUT)',
    ],
    [
      'the request deadline',
      new DOMException('The operation was aborted due to timeout', 'TimeoutError'),
      'The operation was aborted due to timeout (ETIMEDOUT)',
    ],
    [
      'IPv6 and IPv4 both refused',
      fetchFailed(
        new AggregateError([
          coded('connect ECONNREFUSED ::1:8080', 'ECONNREFUSED'),
          coded('connect ECONNREFUSED 127.0.0.1:8080', 'ECONNREFUSED'),
        ]),
      ),
      'fetch failed (ECONNREFUSED)',
    ],
    ['no cause at all', new TypeError('fetch failed'), 'fetch failed'],
  ];
  for (const [what, thrown, reason] of cases) {
    const client = new RelayClient({
      url: 'https://relay.example.net',
      fetch: failingFetch(thrown),
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
    fetch: () => {
      ctrl.abort();
      return Promise.reject(abort);
    },
  });
  await t.rejects(client.list({ signal: ctrl.signal }), abort);
});
