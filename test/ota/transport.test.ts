import { createServer } from 'node:http';
import t from 'tap';
import type { Test } from 'tap';
import { freePort } from '../../dev/fixtures/net.js';
import { HttpTransport, TransportError } from '../../ota/transport.js';
import { listenOnLoopback } from '../fixtures/loopback.js';

async function server(tt: Test, handler: Parameters<typeof createServer>[1]) {
  const port = await listenOnLoopback(tt, createServer(handler));
  return `http://127.0.0.1:${String(port)}`;
}

t.test('getBytes: limits, 404, errors', async (tt) => {
  const url = await server(tt, (req, res) => {
    if (req.url === '/small') res.end('hello');
    else if (req.url === '/big')
      res.writeHead(200, { 'content-length': 100_000 }).end(Buffer.alloc(100_000));
    else if (req.url === '/endless') {
      // no content-length: chunked, and it keeps going
      res.writeHead(200);
      const tick = setInterval(() => res.write(Buffer.alloc(8192)), 1);
      res.on('close', () => {
        clearInterval(tick);
      });
    } else if (req.url === '/slow') {
      res.writeHead(200);
      res.write('a');
    } else if (req.url === '/err') res.writeHead(500).end();
    else res.writeHead(404).end();
  });
  const tr = new HttpTransport({ timeoutMs: 5000, idleMs: 300 });
  tt.same(await tr.getBytes(`${url}/small`, 100), Buffer.from('hello'));
  tt.equal(await tr.getBytes(`${url}/missing`, 100), undefined, '404 is "absent"');
  await tt.rejects(tr.getBytes(`${url}/big`, 1000), { code: 'EOTA_TOO_LONG' });
  await tt.rejects(tr.getBytes(`${url}/endless`, 50_000), {
    code: 'EOTA_TOO_LONG',
  });
  await tt.rejects(tr.getBytes(`${url}/slow`, 1000), /slow retrieval/);
  await tt.rejects(tr.getBytes(`${url}/err`, 1000), TransportError);
  // the cause is named: a scheme the client does not speak, and a closed port
  await tt.rejects(
    tr.getBytes('ftp://127.0.0.1/x', 1000),
    /^cannot fetch \S+ \(ftp: URLs are not supported \(http or https\)\)$/,
  );
  const closed = await freePort();
  await tt.rejects(
    tr.getBytes(`http://127.0.0.1:${String(closed)}/x`, 1000),
    /^cannot fetch \S+ \(ECONNREFUSED\)$/,
  );
});

t.test('getFrom: ranges and their answers', async (tt) => {
  const data = Buffer.from('0123456789');
  const url = await server(tt, (req, res) => {
    const m = /bytes=(\d+)-/.exec(req.headers.range ?? '');
    if (req.url === '/bad') res.writeHead(206, { 'content-range': 'nonsense' }).end('x');
    else if (req.url === '/gone') res.writeHead(404).end();
    else if (m) {
      const start = Number(m[1]);
      res
        .writeHead(206, { 'content-range': `bytes ${String(start)}-9/10` })
        .end(data.subarray(start));
    } else res.writeHead(200, { 'content-length': 10 }).end(data);
  });
  const tr = new HttpTransport();
  const collect = async (it: AsyncIterable<Uint8Array>) => {
    const parts: Buffer[] = [];
    for await (const c of it) parts.push(Buffer.from(c));
    return Buffer.concat(parts).toString();
  };
  const whole = await tr.getFrom(`${url}/f`, 0);
  tt.equal(whole.offset, 0);
  tt.equal(whole.total, 10);
  tt.equal(await collect(whole.body), '0123456789');
  const part = await tr.getFrom(`${url}/f`, 4);
  tt.equal(part.offset, 4);
  tt.equal(part.total, 10);
  tt.equal(await collect(part.body), '456789');
  await tt.rejects(tr.getFrom(`${url}/bad`, 3), /Content-Range/);
  await tt.rejects(tr.getFrom(`${url}/gone`, 0), { code: 'EOTA_NOT_FOUND' });
});
