/**
 * The S3 blob backend against s3rver (an independent S3 implementation from
 * npm, on loopback), through the official @aws-sdk/client-s3.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { SILENT } from '../../base/logger.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { S3BlobStore } from '../../relay/s3-store.js';
import { startRelay } from '../../relay/server.js';
import { tempDir } from './fixtures.js';

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (o: Record<string, unknown>) => S3rverInstance;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverCtor;

t.test('relay with blobs in an S3-compatible store', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-s3-');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: `${dir}/s3`,
    configureBuckets: [{ name: 'vigil-test' }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const mk = (): S3BlobStore =>
    new S3BlobStore({
      bucket: 'vigil-test',
      prefix: 'relay/',
      endpoint,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
  const stores: S3BlobStore[] = [];
  t.teardown(async () => {
    for (const s of stores) s.destroy();
    await server.close();
    await cleanup();
  });

  const direct = mk();
  stores.push(direct);
  const data = randomBytes(5000);
  await direct.put('dev/1/000000000000', data);
  t.same(await direct.get('dev/1/000000000000'), data, 'round trip');
  t.equal(await direct.get('dev/1/missing'), undefined, 'absent key -> undefined');
  await direct.delete('dev/1/000000000000');
  t.equal(await direct.get('dev/1/000000000000'), undefined, 'deleted');
  await direct.delete('dev/1/000000000000');
  t.pass('deleting an absent key is fine');
  await t.rejects(direct.get('../escape'), { code: 'EKEY' });

  const blobs = mk();
  stores.push(blobs);
  let relay = await startRelay({ dataDir: `${dir}/relay`, logger: SILENT, blobs });
  t.teardown(() => relay.close());
  const anon = new RelayClient({ url: relay.url });
  const dev = await anon.registerDevice('dev-s3');
  const devC = anon.withToken(dev.token);
  const tok = randomBytes(18).toString('base64url');
  await devC.offerRendezvous(tok);
  const ph = await anon.claimRendezvous(tok);
  const a = randomBytes(70_000);
  const b = randomBytes(30_000);
  await devC.append('clip-s3', { group: 'motion', kind: 'clip', offset: 0, final: false }, a);
  await devC.append('clip-s3', { group: 'motion', kind: 'clip', offset: a.length, final: true }, b);
  await relay.close();
  const blobs2 = mk();
  stores.push(blobs2);
  relay = await startRelay({ dataDir: `${dir}/relay`, logger: SILENT, blobs: blobs2 });
  const phone = new RelayClient({ url: relay.url, token: ph.token });
  const list = (await phone.list({})).items;
  t.equal(list.length, 1);
  t.same(
    await phone.readAll(list[0]!.seq),
    Buffer.concat([a, b]),
    'ciphertext read back from the object store after a restart',
  );
  await phone.ack(list[0]!.seq);
  t.equal(
    await blobs2.get(`dev-s3/${list[0]!.seq}/000000000000`),
    undefined,
    'objects deleted after the ack',
  );
});
