import t from 'tap';
import { createServer } from 'node:net';
import { PairingClient } from '../../../app/pair/client.js';
import { freePort } from '../../../dev/fixtures/net.js';

void t.test('a refused connection is tried again until the hub listens', async (t) => {
  const port = await freePort();
  const server = createServer((sock) => sock.end());
  t.teardown(() => server.close());
  const retries: string[] = [];
  const client = await PairingClient.connectRetrying('127.0.0.1', port, 60_000, (code) => {
    retries.push(code);
    // the frame server starts after the phone's first attempt
    if (!server.listening) server.listen(port, '127.0.0.1');
  });
  t.ok(client instanceof PairingClient);
  t.same(retries.slice(0, 1), ['ECONNREFUSED']);
});

void t.test('it gives up at the deadline with the connection error', async (t) => {
  const port = await freePort();
  await t.rejects(PairingClient.connectRetrying('127.0.0.1', port, 1500), {
    code: 'EPAIR_CONNECT',
    message: new RegExp(`^cannot reach the hub at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`),
  });
});
