import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listen } from '../../../hw/os/net.js';

function close(s: Server): Promise<void> {
  return new Promise((resolve) =>
    s.close(() => {
      resolve();
    }),
  );
}

void t.test('listen resolves once a TCP server listens', async (t) => {
  const s = createServer();
  await listen(s, { host: '127.0.0.1', port: 0 });
  t.ok(s.listening);
  t.ok((s.address() as AddressInfo).port > 0);
  t.equal(s.listenerCount('error'), 0, 'no error listener left behind');
  await close(s);
});

void t.test('listen rejects with the listen error (port in use)', async (t) => {
  const a = createServer();
  await listen(a, { host: '127.0.0.1', port: 0 });
  const b = createServer();
  await t.rejects(listen(b, { host: '127.0.0.1', port: (a.address() as AddressInfo).port }), {
    code: 'EADDRINUSE',
  });
  t.equal(b.listenerCount('error'), 0, 'no error listener left behind');
  t.notOk(b.listening);
  await close(a);
});

void t.test('listen takes a Unix socket path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-net-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const s = createServer();
  await listen(s, { path: join(dir, 'x.sock') });
  t.equal(s.address(), join(dir, 'x.sock'));
  await close(s);
});
