/**
 * Scale-out acceptance: two `vigil relay` processes on one PostgreSQL database
 * and one S3 store (s3rver). A hub uploads through one, a phone long-polls and
 * reads through the other, live records cross over; killing the hub's relay
 * mid-upload loses nothing: the hub resumes on the other one.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { postgresAvailable, startPostgres } from '../../dev/fixtures/postgres.js';
import { startRelayProcess } from '../../dev/fixtures/relay-process.js';
import type { RelayProcess } from '../../dev/fixtures/relay-process.js';
import { startS3rver } from '../../dev/fixtures/s3rver.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { S3BlobStore } from '../../relay/s3-store.js';
import { tempDir } from '../relay/fixtures.js';

if (!(await postgresAvailable())) {
  t.plan(0, 'PostgreSQL is not installed (apt install postgresql)');
} else {
  t.test('two relay processes on PostgreSQL + S3', async (t) => {
    const { dir, cleanup } = await tempDir('vigil-scale-');
    t.teardown(cleanup);
    const pg = await startPostgres();
    t.teardown(() => pg.stop());
    const s3 = await startS3rver(`${dir}/s3`);
    t.teardown(() => s3.close());
    const procs: RelayProcess[] = [];
    t.teardown(async () => {
      for (const p of procs) await p.stop();
    });
    const relay = async (name: string): Promise<RelayProcess> => {
      const p = await startRelayProcess(
        [
          '--port',
          '0',
          '--data-dir',
          `${dir}/${name}`,
          '--database',
          pg.url,
          '--backend',
          's3',
          '--s3-bucket',
          s3.bucket,
          '--s3-endpoint',
          s3.endpoint,
          '--s3-prefix',
          'relay/',
        ],
        { env: s3.env },
      );
      procs.push(p);
      return p;
    };
    // two starts at once: the migrations run once, both serve
    const [a, b] = await Promise.all([relay('a'), relay('b')]);

    const cred = await new RelayClient({ url: a.url }).registerDevice('dev-scale-1');
    const hubA = new RelayClient({ url: a.url, token: cred.token });
    const hubB = new RelayClient({ url: b.url, token: cred.token });
    const tok = randomBytes(18).toString('base64url');
    await hubA.offerRendezvous(tok);
    const ph = await new RelayClient({ url: b.url }).claimRendezvous(tok);
    const phone = new RelayClient({ url: b.url, token: ph.token });

    // the phone waits on b; the hub's first append on a wakes it
    const listed = phone.list({ waitMs: 30_000 });
    const parts = [randomBytes(64 * 1024), randomBytes(64 * 1024), randomBytes(64 * 1024)];
    const p0 = { group: 'motion', kind: 'clip' as const };
    await hubA.append('clip-1', { ...p0, offset: 0, final: false }, parts[0] ?? Buffer.alloc(0));
    const item = (await listed).items[0];
    t.equal(item?.itemId, 'clip-1', 'the long-poll on b was woken by the append on a');
    const reading = phone.readAll(item?.seq ?? 0, { waitMs: 30_000 });

    // live records cross over
    const live = phone.readLive({ waitMs: 30_000 });
    await hubA.appendLive('live-1', 0, false, Buffer.from('container header'));
    t.equal((await live)?.data.toString(), 'container header', 'live record from a read on b');

    await hubA.append(
      'clip-1',
      { ...p0, offset: 65536, final: false },
      parts[1] ?? Buffer.alloc(0),
    );
    // the next append is cut off: relay a dies with half the body received
    await new Promise<void>((resolve) => {
      const req = request(`${a.url}/v1/items/clip-1?group=motion&kind=clip&offset=131072&final=1`, {
        method: 'PUT',
        headers: {
          authorization: `Bearer ${cred.token}`,
          'content-length': String(65536),
          'content-type': 'application/octet-stream',
        },
      });
      req.on('error', () => {
        resolve(); // the connection died with the relay
      });
      req.on('response', () => {
        resolve();
      });
      req.write((parts[2] ?? Buffer.alloc(0)).subarray(0, 32768), () => {
        void a.kill();
      });
    });
    t.equal((await a.proc.exited).signal, 'SIGKILL', 'relay a was killed mid-upload');

    // the hub resumes on b from what the relays acknowledged
    const st = await hubB.uploadStatus('clip-1');
    t.same(st && { received: st.received, complete: st.complete }, {
      received: 131072,
      complete: false,
    });
    await hubB.append(
      'clip-1',
      { ...p0, offset: 131072, final: true },
      parts[2] ?? Buffer.alloc(0),
    );
    t.same(
      await reading,
      Buffer.concat(parts),
      'the phone read every byte, streaming across the kill',
    );

    // a relay started after the kill serves the same accounts
    const c = await relay('c');
    const phoneC = new RelayClient({ url: c.url, token: ph.token });
    t.same(
      (await phoneC.list({})).items.map((i) => [i.itemId, i.size, i.complete]),
      [['clip-1', 196608, true]],
    );
    await phoneC.ack(item?.seq ?? 0);
    t.same((await phone.list({})).items, [], 'acknowledged through c: gone on b');
    const store = new S3BlobStore({
      bucket: s3.bucket,
      prefix: 'relay/',
      endpoint: s3.endpoint,
      credentials: s3.credentials,
    });
    t.teardown(() => {
      store.destroy();
    });
    t.equal(
      await store.get(`dev-scale-1/${item?.seq ?? 0}/000000000000`),
      undefined,
      'its objects deleted from the S3 store',
    );
    t.notMatch(b.output() + c.output(), /"level":"error"/, 'no errors logged by b or c');
  });
}
