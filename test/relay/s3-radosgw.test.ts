/**
 * S3 compatibility against a real S3 implementation: Ceph's RADOS Gateway
 * (Debian's radosgw on a single-node cluster, dev/fixtures/radosgw.ts). The
 * fast tests use s3rver (s3-store.test.ts); this one proves the calls the
 * relay makes — PutObject, GetObject (whole objects: the relay stores one
 * object per append and never needs ranged reads or multipart), DeleteObject
 * and the missing-key answer — against the implementation people deploy.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { SILENT } from '../../base/logger.js';
import { radosgwAvailable, startRadosGateway } from '../../dev/fixtures/radosgw.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { S3BlobStore } from '../../relay/s3-store.js';
import { startRelay } from '../../relay/server.js';
import { tempDir } from './fixtures.js';

if (!(await radosgwAvailable())) {
  t.plan(0, 'Ceph radosgw is not installed (apt install radosgw ceph-mon ceph-osd)');
} else {
  t.test('relay blobs on Ceph RADOS Gateway', async (t) => {
    const rgw = await startRadosGateway();
    t.teardown(() => rgw.stop());
    const cfg = {
      region: 'us-east-1',
      endpoint: rgw.endpoint,
      forcePathStyle: true,
      credentials: rgw.credentials,
    };
    const admin = new S3Client(cfg);
    t.teardown(() => {
      admin.destroy();
    });
    await admin.send(new CreateBucketCommand({ Bucket: 'vigil' }));
    const stores: S3BlobStore[] = [];
    t.teardown(() => {
      for (const s of stores) s.destroy();
    });
    const mk = (): S3BlobStore => {
      const s = new S3BlobStore({ bucket: 'vigil', prefix: 'relay/', ...cfg });
      stores.push(s);
      return s;
    };

    const direct = mk();
    const big = randomBytes(4 * 1024 * 1024); // the largest append
    await direct.put('dev/1/000000000000', big);
    t.same(await direct.get('dev/1/000000000000'), big, 'a 4 MiB object round trip');
    await direct.put('dev/1/000000000000', Buffer.from('replaced'));
    t.same(await direct.get('dev/1/000000000000'), Buffer.from('replaced'), 'a put replaces');
    await direct.put('dev/1/000000000001', Buffer.alloc(0));
    t.same(await direct.get('dev/1/000000000001'), Buffer.alloc(0), 'an empty object');
    t.equal(await direct.get('dev/1/missing'), undefined, 'absent key -> undefined');
    await direct.delete('dev/1/000000000000');
    await direct.delete('dev/1/000000000000');
    t.equal(await direct.get('dev/1/000000000000'), undefined, 'deleted (twice is fine)');
    const wrong = new S3BlobStore({
      bucket: 'vigil',
      ...cfg,
      credentials: { accessKeyId: rgw.credentials.accessKeyId, secretAccessKey: 'wrong' },
    });
    stores.push(wrong);
    await t.rejects(
      wrong.put('dev/1/x', Buffer.from('x')),
      { code: 'ES3' },
      'bad signature refused',
    );

    const { dir, cleanup } = await tempDir('vigil-rgw-relay-');
    t.teardown(cleanup);
    let relay = await startRelay({ dataDir: dir, logger: SILENT, blobs: mk() });
    const anon = new RelayClient({ url: relay.url });
    const dev = await anon.registerDevice('dev-rgw');
    const hub = anon.withToken(dev.token);
    const tok = randomBytes(18).toString('base64url');
    await hub.offerRendezvous(tok);
    const ph = await anon.claimRendezvous(tok);
    const parts = [randomBytes(1 << 20), randomBytes(70_000), randomBytes(3)];
    let off = 0;
    for (const [i, p] of parts.entries()) {
      await hub.append(
        'clip-rgw',
        { group: 'motion', kind: 'clip', offset: off, final: i === 2 },
        p,
      );
      off += p.length;
    }
    await relay.close();
    const blobs = mk();
    relay = await startRelay({ dataDir: dir, logger: SILENT, blobs });
    t.teardown(() => relay.close());
    const phone = new RelayClient({ url: relay.url, token: ph.token });
    const [item] = (await phone.list({})).items;
    t.same(await phone.readAll(item?.seq ?? 0), Buffer.concat(parts), 'read back after a restart');
    await phone.ack(item?.seq ?? 0);
    t.equal(
      await blobs.get(`dev-rgw/${item?.seq ?? 0}/000000000000`),
      undefined,
      'gone after the ack',
    );
  });
}
