// base/http.ts against real loopback servers (plain and TLS): answers, limits, timeouts, errors.
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { rm } from 'node:fs/promises';
import t from 'tap';
import type { Test } from 'tap';
import { networkCause, reasonOf } from '../../base/errors.js';
import { HttpError, httpRequest } from '../../base/http.js';
import { freePort } from '../../dev/fixtures/net.js';
import { tempDir } from '../../dev/fixtures/paired-hub.js';
import { listenOnLoopback } from '../fixtures/loopback.js';
import { loopbackCertificate } from '../fixtures/tls.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function server(
  tt: Test,
  handler: Handler,
): Promise<{ url: string; connections: () => number }> {
  const s = createServer(handler);
  let n = 0;
  s.on('connection', () => n++);
  const port = await listenOnLoopback(tt, s);
  return { url: `http://127.0.0.1:${String(port)}`, connections: () => n };
}

const bodyOf = (req: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      resolve(Buffer.concat(parts));
    });
    req.on('error', reject);
  });

t.test(
  'a request and its answer: method, headers, body, status; the connection is kept',
  async (tt) => {
    const { url, connections } = await server(tt, (req, res) => {
      void bodyOf(req).then((b) => {
        res
          .writeHead(req.url === '/missing' ? 404 : 200, {
            'content-type': 'application/json',
            'x-two': ['a', 'b'],
          })
          .end(
            JSON.stringify({
              method: req.method,
              url: req.url,
              len: b.length,
              auth: req.headers.authorization,
            }),
          );
      });
    });
    const a = await httpRequest(`${url}/x?y=1`, {
      method: 'PUT',
      headers: { authorization: 'Bearer t' },
      body: new Uint8Array(70_000),
    });
    tt.equal(a.status, 200);
    tt.ok(a.ok);
    tt.equal(a.header('Content-Type'), 'application/json', 'header names are case-insensitive');
    tt.equal(a.header('x-two'), 'a, b');
    tt.same(await a.json(), { method: 'PUT', url: '/x?y=1', len: 70_000, auth: 'Bearer t' });
    await tt.rejects(a.bytes(), { code: 'EHTTP_FAILED' }, 'a body is read once');
    // node's agent takes the socket back after the answer's end, in a later turn of the loop
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    await turn();
    const b = await httpRequest(`${url}/missing`, { body: 'text' });
    tt.equal(b.status, 404);
    tt.notOk(b.ok);
    b.discard();
    await turn();
    const c = await httpRequest(new URL(`${url}/again`));
    tt.match(await c.text(), /"url":"\/again"/);
    tt.equal(connections(), 1, 'one kept-alive connection for the three requests');
  },
);

t.test('size limits: a declared length and a body that keeps coming', async (tt) => {
  const { url } = await server(tt, (req, res) => {
    if (req.url === '/big')
      res.writeHead(200, { 'content-length': 100_000 }).end(Buffer.alloc(100_000));
    else {
      res.writeHead(200); // chunked, endless
      const tick = setInterval(() => res.write(Buffer.alloc(8192)), 1);
      res.on('close', () => {
        clearInterval(tick);
      });
    }
  });
  const big = await httpRequest(`${url}/big`, { maxBytes: 1000 });
  await tt.rejects(big.bytes(), {
    code: 'EHTTP_TOO_LARGE',
    message: 'the answer is 100000 bytes, more than the 1000 allowed',
  });
  const endless = await httpRequest(`${url}/endless`, { maxBytes: 50_000 });
  await tt.rejects(endless.bytes(), {
    code: 'EHTTP_TOO_LARGE',
    message: 'the answer is longer than the 50000 bytes allowed',
  });
  // the answer streamed: chunks stop at the limit too
  const streamed = await httpRequest(`${url}/endless`, { maxBytes: 20_000 });
  let seen = 0;
  await tt.rejects(
    (async () => {
      for await (const c of streamed.chunks()) seen += c.length;
    })(),
    { code: 'EHTTP_TOO_LARGE' },
  );
  tt.ok(seen <= 20_000, `no more than the limit was handed out (${String(seen)})`);
});

t.test('timeouts: the deadline, an idle body, an idle wait for the headers', async (tt) => {
  const held: ServerResponse[] = [];
  const { url } = await server(tt, (req, res) => {
    if (req.url === '/trickle') {
      res.writeHead(200);
      res.write('a');
    }
    held.push(res); // never ends
  });
  const deadline = httpRequest(`${url}/never`, { signal: AbortSignal.timeout(200) });
  await tt.rejects(deadline, { name: 'TimeoutError' });
  tt.equal(networkCause(await deadline.catch((e: unknown) => e)), 'ETIMEDOUT');
  await tt.rejects(httpRequest(`${url}/never`, { idleMs: 200 }), {
    code: 'EHTTP_IDLE',
    message: 'no data for 200 ms',
  });
  const trickle = await httpRequest(`${url}/trickle`, { idleMs: 200 });
  tt.equal(trickle.status, 200);
  await tt.rejects(trickle.bytes(), { code: 'EHTTP_IDLE' });
});

t.test('idleMs counts the wait for data, not a reader that takes its time', async (tt) => {
  const body = Buffer.alloc(8 * 1024 * 1024, 7);
  const { url } = await server(tt, (_req, res) => {
    res.writeHead(200, { 'content-length': String(body.length) }).end(body);
  });
  const a = await httpRequest(`${url}/big`, { idleMs: 1000, maxBytes: body.length });
  let got = 0;
  let held = 0;
  for await (const c of a.chunks()) {
    got += c.length;
    // the reader is busy (a download's fsync on a slow card) for 2.5 idle periods, three
    // times: the socket is held back for it, the server is not slow
    if (held < 3) {
      held++;
      await new Promise((r) => setTimeout(r, 2500));
    }
  }
  tt.equal(got, body.length, 'the whole body, no EHTTP_IDLE');
});

t.test('a discarded short answer whose server stalls is cut after idleMs', async (tt) => {
  let closed: Promise<void> | undefined;
  const { url } = await server(tt, (req, res) => {
    closed = new Promise((resolve) =>
      req.socket.once('close', () => {
        resolve();
      }),
    );
    res.writeHead(500, { 'content-length': '100' });
    res.write('0123456789'); // and never the rest
  });
  const a = await httpRequest(`${url}/stall`, { idleMs: 200 });
  tt.equal(a.status, 500);
  a.discard();
  await closed;
  tt.pass('the connection was closed, not left draining');
});

t.test("the caller's abort, before and during the body, rejects with its reason", async (tt) => {
  const { url } = await server(tt, (_req, res) => {
    res.writeHead(200);
    res.write('first');
  });
  const before = new AbortController();
  const stop = new Error('stopped');
  before.abort(stop);
  await tt.rejects(httpRequest(url, { signal: before.signal }), stop);
  const during = new AbortController();
  const a = await httpRequest(url, { signal: during.signal });
  const got: string[] = [];
  await tt.rejects(
    (async () => {
      for await (const c of a.chunks()) {
        got.push(c.toString());
        during.abort(stop);
      }
    })(),
    stop,
  );
  tt.same(got, ['first']);
});

t.test('network failures: a clear one-line cause', async (tt) => {
  const closed = await freePort();
  const refused = await httpRequest(`http://127.0.0.1:${String(closed)}/`).catch((e: unknown) => e);
  tt.ok(refused instanceof HttpError);
  tt.match(refused, { code: 'EHTTP_FAILED', message: 'request failed' });
  tt.equal(networkCause(refused), 'ECONNREFUSED');
  await tt.rejects(httpRequest('ftp://127.0.0.1/x'), {
    code: 'EHTTP_URL',
    message: 'ftp: URLs are not supported (http or https)',
  });
  await tt.rejects(httpRequest('not a url'), {
    code: 'EHTTP_URL',
    message: 'not a URL: not a url',
  });
  // the server hangs up in the middle of a declared body
  const { url } = await server(tt, (_req, res) => {
    res.writeHead(200, { 'content-length': 1000 });
    res.write('part', () => {
      res.socket?.destroy();
    });
  });
  const cut = await httpRequest(url);
  const err = await cut.bytes().catch((e: unknown) => e);
  tt.match(err, { code: 'EHTTP_FAILED' });
  tt.match(reasonOf(err), 'request failed');
});

t.test('TLS: a loopback server with its own certificate', async (tt) => {
  const dir = tempDir('vigil-http-tls-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const { cert, key } = await loopbackCertificate(dir);
  const s = createTlsServer({ cert, key }, (req, res) => {
    void bodyOf(req).then((b) => res.end(`got ${String(b.length)}`));
  });
  const url = `https://127.0.0.1:${String(await listenOnLoopback(tt, s))}/v1/health`;
  const a = await httpRequest(url, { ca: cert, method: 'POST', body: 'hello' });
  tt.equal(await a.text(), 'got 5', 'verified against the given certificate');
  const untrusted = await httpRequest(url).catch((e: unknown) => e);
  tt.match(untrusted, { code: 'EHTTP_FAILED' });
  tt.match(networkCause(untrusted), /^DEPTH_ZERO_SELF_SIGNED_CERT: /, 'the TLS cause is named');
});
