import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { DownloadError, downloadTarget, fileMatches } from '../../ota/download.js';
import type { TargetFile } from '../../ota/metadata.js';
import { startStaticServer } from '../../ota/static-server.js';
import { FetchTransport } from '../../ota/transport.js';
import { listenOnLoopback } from '../fixtures/loopback.js';
import { tempDir } from './helpers.js';

const body = randomBytes(200_000);
const target: TargetFile = {
  length: body.length,
  hashes: {
    sha256: createHash('sha256').update(body).digest('hex'),
    sha512: createHash('sha512').update(body).digest('hex'),
  },
};

async function setup(tt: Test) {
  const dir = await tempDir();
  await writeFile(join(dir, 'file.bin'), body);
  const server = await startStaticServer(dir);
  tt.teardown(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, url: `${server.url}/file.bin`, dest: join(dir, 'dl', 'out.bin') };
}

t.test('downloads, reports progress and verifies', async (tt) => {
  const { url, dest } = await setup(tt);
  const seen: number[] = [];
  const r = await downloadTarget({
    transport: new FetchTransport(),
    fs: new DurableFs(),
    url,
    dest,
    target,
    onProgress: (p) => seen.push(p.received),
  });
  tt.equal(r.resumedFrom, 0);
  tt.same(await readFile(dest), body);
  tt.equal(seen.at(-1), body.length, 'progress reaches the total');
  tt.ok(
    seen.every((v, i) => i === 0 || v >= seen[i - 1]!),
    'progress is monotonic',
  );
  const again = await downloadTarget({
    transport: new FetchTransport(),
    fs: new DurableFs(),
    url,
    dest,
    target,
  });
  tt.equal(again.resumedFrom, body.length, 'an already verified file is not fetched again');
});

t.test('resumes a partial download with a Range request', async (tt) => {
  const { url, dest, dir } = await setup(tt);
  await (await import('node:fs/promises')).mkdir(join(dir, 'dl'), { recursive: true });
  await writeFile(`${dest}.part`, body.subarray(0, 12_345));
  const r = await downloadTarget({
    transport: new FetchTransport(),
    fs: new DurableFs(),
    url,
    dest,
    target,
  });
  tt.equal(r.resumedFrom, 12_345);
  tt.same(await readFile(dest), body);
  await tt.rejects(stat(`${dest}.part`), 'the part file became the download');
});

t.test(
  'a corrupted part is discarded on hash mismatch, then the next attempt succeeds',
  async (tt) => {
    const { url, dest, dir } = await setup(tt);
    await (await import('node:fs/promises')).mkdir(join(dir, 'dl'), { recursive: true });
    const bad = Buffer.from(body.subarray(0, 50_000));
    bad[100] = (bad[100] ?? 0) ^ 1;
    await writeFile(`${dest}.part`, bad);
    const e = await downloadTarget({
      transport: new FetchTransport(),
      fs: new DurableFs(),
      url,
      dest,
      target,
    }).catch((x: unknown) => x);
    tt.ok(e instanceof DownloadError && e.failure === 'hash', 'hash mismatch');
    await tt.rejects(stat(`${dest}.part`), 'the bad part is gone');
    await downloadTarget({
      transport: new FetchTransport(),
      fs: new DurableFs(),
      url,
      dest,
      target,
    });
    tt.same(await readFile(dest), body);
  },
);

t.test('endless data, a wrong size and servers that ignore ranges', async (tt) => {
  const { url, dest, dir } = await setup(tt);
  const short: TargetFile = { ...target, length: 1000 };
  const e = await downloadTarget({
    transport: new FetchTransport(),
    fs: new DurableFs(),
    url,
    dest,
    target: short,
  }).catch((x: unknown) => x);
  tt.ok(
    e instanceof DownloadError && e.failure === 'length',
    `more bytes than signed: refused (${String(e)})`,
  );
  // A server that always answers 200 with the whole body: the part restarts from zero.
  const srv = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  const u2 = `http://127.0.0.1:${String(await listenOnLoopback(tt, srv))}/x`;
  const dest2 = join(dir, 'dl2', 'out.bin');
  await (await import('node:fs/promises')).mkdir(join(dir, 'dl2'), { recursive: true });
  await writeFile(`${dest2}.part`, body.subarray(0, 777));
  await downloadTarget({
    transport: new FetchTransport(),
    fs: new DurableFs(),
    url: u2,
    dest: dest2,
    target,
  });
  tt.same(await readFile(dest2), body, 'whole body when the range is ignored');
  const e404 = await downloadTarget({
    transport: new FetchTransport(),
    fs: new DurableFs(),
    url: `${url}.missing`,
    dest: join(dir, 'm.bin'),
    target,
  }).catch((x: unknown) => x);
  tt.ok(e404 instanceof DownloadError && e404.failure === 'fetch', 'missing file: fetch failure');
  tt.notOk(await fileMatches(join(dir, 'nope'), target), 'absent file never matches');
  tt.notOk(
    await fileMatches(join(dir, 'file.bin'), { length: body.length, hashes: { md5: 'x' } }),
    'no usable hash: refuse',
  );
});

t.test('an endless target is refused and leaves no part file behind', async (tt) => {
  const { dir } = await setup(tt);
  // No Content-Length: the only limit is the signed length.
  const srv = createServer((_req, res) => {
    res.writeHead(200);
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk));
    };
    res.on('drain', pump);
    pump();
  });
  const url = `http://127.0.0.1:${String(await listenOnLoopback(tt, srv))}/endless`;
  const dest = join(dir, 'dl3', 'out.bin');
  for (const [what, before] of [
    ['a fresh download', undefined],
    ['a resumed one', body.subarray(0, 500)],
  ] as const) {
    if (before !== undefined) await writeFile(`${dest}.part`, before);
    const e = await downloadTarget({
      transport: new FetchTransport(),
      fs: new DurableFs(),
      url,
      dest,
      target: { ...target, length: 1000 },
    }).catch((x: unknown) => x);
    tt.ok(
      e instanceof DownloadError && e.failure === 'length',
      `${what}: refused as too long (${String(e)})`,
    );
    await tt.rejects(stat(`${dest}.part`), { code: 'ENOENT' }, `${what}: no part file left`);
    await tt.rejects(stat(dest), { code: 'ENOENT' }, `${what}: no download either`);
  }
});

t.test(
  'a complete part left before its rename is verified and kept, without a transfer',
  async (tt) => {
    const { dir, dest } = await setup(tt);
    await (await import('node:fs/promises')).mkdir(join(dir, 'dl'), { recursive: true });
    await writeFile(`${dest}.part`, body);
    // nothing listens here: a transfer would fail
    const r = await downloadTarget({
      transport: new FetchTransport(),
      fs: new DurableFs(),
      url: 'http://127.0.0.1:9/file.bin',
      dest,
      target,
    });
    tt.equal(r.resumedFrom, body.length);
    tt.same(await readFile(dest), body);
    // the same with a flipped bit: refused, and the part is gone
    const bad = Buffer.from(body);
    bad[7] = (bad[7] ?? 0) ^ 1;
    await rm(dest);
    await writeFile(`${dest}.part`, bad);
    const e = await downloadTarget({
      transport: new FetchTransport(),
      fs: new DurableFs(),
      url: 'http://127.0.0.1:9/file.bin',
      dest,
      target,
    }).catch((x: unknown) => x);
    tt.ok(e instanceof DownloadError && e.failure === 'hash', 'hash mismatch');
    await tt.rejects(stat(`${dest}.part`), 'the bad part is gone');
  },
);
