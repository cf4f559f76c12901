// The hub speaks HTTP without the platform fetch (undici: +3-4 MiB of resident memory, issue
// #19): a process that loads the hub's recording path and makes every kind of request the hub
// makes (relay client, meeting, OTA transport, health probe) never loads undici. eslint's
// no-restricted-globals keeps `fetch` out of the hub's folders; this catches a package or a
// helper that would bring it back.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../hw/os/run.js';

t.test('the hub path makes its requests without loading undici', async (t) => {
  const seen: string[] = [];
  const s = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${new URL(req.url ?? '/', 'http://x').pathname}`);
    req.resume();
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const json = (v: unknown): void => {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      };
      if (path === '/v1/health') json({ ok: true });
      else if (path.startsWith('/v1/items/'))
        json({ itemId: 'item-1', seq: 7, received: 100_000, complete: true });
      else if (path === '/v1/devices')
        json({ principal: 'device', id: 'dev-1', deviceId: 'dev-1', token: 'd.dev-1.secret' });
      else if (path === '/v1/rendezvous') json({ ok: true });
      else if (path === '/ota/timestamp.json') res.end('{"signed":{}}');
      else if (path === '/ota/target')
        res.writeHead(206, { 'content-range': 'bytes 3-9/10' }).end('3456789');
      else res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    s.closeAllConnections();
    s.close();
  });
  const url = `http://127.0.0.1:${String((s.address() as AddressInfo).port)}`;
  const child = join(import.meta.dirname, '..', 'fixtures', 'hub-http-child.ts');
  const r = await run(process.execPath, ['--import', 'tsx', child, url], { timeoutMs: 300_000 });
  const out = JSON.parse(r.stdout.toString('utf8').trim()) as Record<string, unknown>;
  t.match(out, {
    health: true,
    append: { itemId: 'item-1', received: 100_000, complete: true },
    acct: { url, deviceId: 'dev-1', token: 'd.dev-1.secret' },
    meta: '{"signed":{}}',
    ranged: '3456789',
    probe: true,
    contacted: true,
  });
  t.same(out.undici, [], 'undici was never loaded');
  t.same(
    seen,
    [
      'GET /v1/health',
      'PUT /v1/items/item-1',
      'POST /v1/devices',
      'PUT /v1/rendezvous',
      'GET /ota/timestamp.json',
      'GET /ota/target',
      'GET /v1/health',
    ],
    'every request reached the server',
  );
});
