import t from 'tap';
import { randomBytes } from 'node:crypto';
import { get, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { MemoryLogger } from '../../../base/logger.js';
import { StaticKeyCrypto } from '../../../app/crypto.js';
import { ItemStore } from '../../../app/store.js';
import { startViewer } from '../../../app/viewer/server.js';
import { RECORD_HEADER_LENGTH, indexRecords } from '../../../protocol/container.js';
import { MemorySink } from '../../../dev/fixtures/paired-hub.js';
import { tempDir } from '../../relay/fixtures.js';
import { StaticKeySealer, sealWhole } from '../fixtures.js';

interface Got {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The whole message arrived (as many bytes as its content-length). */
  complete: boolean;
}

/** A GET over loopback with node:http, reporting whether the body arrived whole. */
function fetchRaw(url: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    get(url, { headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('error', () => undefined); // 'aborted' surfaces as complete === false below
      res.on('close', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts),
          complete: res.complete,
        });
      });
    }).on('error', reject);
  });
}

t.test(
  'viewer media: streamed from the stored item, by range, tampering never served as whole',
  async (t) => {
    const { dir, cleanup } = await tempDir('vigil-viewer-media-');
    t.teardown(cleanup);
    const key = randomBytes(32);
    const sink = new MemorySink();
    const sealer = new StaticKeySealer(key, sink); // 16 KiB chunks
    const store = new ItemStore(join(dir, 'app'), new DurableFs());
    const clip = randomBytes(600_000);
    let seq = 0;
    const save = async (bytes: Buffer, itemId: string): Promise<number> => {
      seq++;
      await store.save(
        {
          seq,
          relayItemId: `r${seq}`,
          group: 'motion',
          summary: {
            itemId,
            kind: 'clip',
            deviceId: 'dev-static',
            startedAt: Date.UTC(2026, 11, 7),
            codec: 'video/mp4',
          },
          size: bytes.length,
          durationMs: 6000,
          storedAt: Date.now(),
        },
        bytes,
      );
      return seq;
    };
    const id = await sealWhole(
      sealer,
      { kind: 'clip', startedAt: Date.UTC(2026, 11, 7), codec: 'video/mp4' },
      clip,
      6,
      6000,
    );
    const bytes = sink.bytes(id);
    const ix = indexRecords(bytes);
    if (!ix.ok) throw new Error(ix.reason);
    const recs = ix.value.records;
    const flip = (at: number): Buffer => {
      const b = Buffer.from(bytes);
      b[at] = (b[at] ?? 0) ^ 1;
      return b;
    };
    const good = await save(bytes, id);
    const lateTamper = await save(flip((recs[30]?.offset ?? 0) + RECORD_HEADER_LENGTH + 9), id);
    const firstTamper = await save(flip((recs[0]?.offset ?? 0) + RECORD_HEADER_LENGTH + 9), id);
    const truncated = await save(bytes.subarray(0, recs.at(-1)?.offset), id);

    const logger = new MemoryLogger('viewer');
    const viewer = await startViewer({ store, crypto: new StaticKeyCrypto(key), logger });
    t.teardown(() => viewer.close());
    const tok = new URL(viewer.url).searchParams.get('t') ?? '';
    const url = (n: number, q = ''): string =>
      `${viewer.url.replace(/\/\?t=.*$/, '')}/api/items/${n}/media?t=${tok}${q}`;

    const whole = await fetchRaw(url(good));
    t.equal(whole.status, 200);
    t.equal(whole.headers['content-length'], String(clip.length));
    t.ok(whole.complete);
    t.same(whole.body, clip, 'the whole clip, decrypted chunk by chunk');
    const dl = await fetchRaw(url(good, '&download'));
    t.match(
      dl.headers['content-disposition'],
      /attachment; filename="vigil-2026-12-07_00-00-00\.mp4"/,
    );
    t.same(dl.body, clip);
    for (const [range, a, b] of [
      ['bytes=0-99', 0, 99],
      ['bytes=16380-50000', 16_380, 50_000],
      ['bytes=599990-', 599_990, 599_999],
      ['bytes=-10', 599_990, 599_999],
    ] as const) {
      const r = await fetchRaw(url(good), { range });
      t.equal(r.status, 206, range);
      t.equal(r.headers['content-range'], `bytes ${a}-${b}/${clip.length}`);
      t.same(r.body, clip.subarray(a, b + 1), `${range}: the clip's bytes`);
    }
    t.equal((await fetchRaw(url(good), { range: 'bytes=700000-' })).status, 416);

    // a chunk tampered deep in the item: the response starts, then is cut off (never complete)
    const late = await fetchRaw(url(lateTamper));
    t.equal(late.status, 200, 'the first chunks were good, so the response began');
    t.notOk(late.complete, 'but it is aborted at the tampered chunk');
    t.ok(late.body.length < clip.length, `only ${late.body.length} bytes arrived`);
    t.same(late.body, clip.subarray(0, late.body.length), 'and those were the authentic ones');
    // a range that stays before the tampered chunk is served
    const early = await fetchRaw(url(lateTamper), { range: 'bytes=0-1000' });
    t.equal(early.status, 206);
    t.same(early.body, clip.subarray(0, 1001));
    // the first chunk tampered, or the end record missing: refused before anything is sent
    const first = await fetchRaw(url(firstTamper));
    t.equal(first.status, 500);
    t.match(first.body.toString(), /could not open this item/);
    const trunc = await fetchRaw(url(truncated));
    t.equal(trunc.status, 500, 'a truncated item is refused before any byte');
    t.match(
      logger.lines.join('\n'),
      /ECHUNK_TAMPERED[\s\S]*EITEM_TRUNCATED|EITEM_TRUNCATED[\s\S]*ECHUNK_TAMPERED/,
      'the log says why',
    );
  },
);
