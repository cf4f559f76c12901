import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { request } from 'node:http';
import t from 'tap';
import { startStaticServer } from '../../ota/static-server.js';
import { tempDir } from './helpers.js';

t.test('serves files with ranges, refuses everything else', async (tt) => {
  const dir = await tempDir();
  await mkdir(join(dir, 'metadata'));
  await writeFile(join(dir, 'metadata', 'timestamp.json'), '{"x":1}');
  await writeFile(join(dir, 'blob.bin'), '0123456789');
  await writeFile(join(dir, 'empty'), '');
  const s = await startStaticServer(dir);
  tt.teardown(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  const get = (p: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${s.url}${p}`, { headers, method });
  const j = await get('/metadata/timestamp.json');
  tt.equal(j.status, 200);
  tt.equal(j.headers.get('content-type'), 'application/json');
  tt.equal(await j.text(), '{"x":1}');
  const r = await get('/blob.bin', { range: 'bytes=3-5' });
  tt.equal(r.status, 206);
  tt.equal(r.headers.get('content-range'), 'bytes 3-5/10');
  tt.equal(await r.text(), '345');
  tt.equal(await (await get('/blob.bin', { range: 'bytes=7-' })).text(), '789');
  tt.equal(await (await get('/blob.bin', { range: 'bytes=-2' })).text(), '89', 'suffix range');
  tt.equal((await get('/blob.bin', { range: 'bytes=20-' })).status, 416);
  tt.equal(
    (await get('/blob.bin', { range: 'bytes=1-2,4-5' })).status,
    200,
    'multi-range: whole file',
  );
  tt.equal((await get('/blob.bin', {}, 'HEAD')).headers.get('content-length'), '10');
  tt.equal((await get('/blob.bin', {}, 'POST')).status, 405);
  tt.equal((await get('/metadata')).status, 404, 'no directory listing');
  tt.equal((await get('/missing')).status, 404);
  // fetch normalises "..": send raw paths with node:http. A file beside the root must stay out of reach.
  const secret = join(dir, '..', `${basename(dir)}-secret.txt`);
  await writeFile(secret, 'secret');
  tt.teardown(() => rm(secret, { force: true }));
  for (const path of [
    `/../${basename(secret)}`,
    `/%2e%2e/${basename(secret)}`,
    `/..%2f${basename(secret)}`,
  ]) {
    const got = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const u = new URL(s.url);
      request({ host: u.hostname, port: u.port, path }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: text });
        });
      })
        .on('error', reject)
        .end();
    });
    tt.not(got.status, 200, `${path}: not served (${String(got.status)})`);
    tt.notMatch(got.body, /secret/);
  }
  tt.equal((await get('/%E0%A4%A')).status, 400, 'bad escapes');
  tt.equal(await (await get('/empty')).text(), '');
});
