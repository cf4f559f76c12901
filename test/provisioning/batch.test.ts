import t from 'tap';
import { mkdtemp, readFile, readdir, stat, mkdir, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs, CrashController, SimulatedCrash } from '../../hw/os/fs.js';
import {
  BatchError,
  defaultBatchId,
  manifestCsv,
  provisionBatch,
} from '../../provisioning/batch.js';
import { readBundle } from '../../protocol/provisioning-bundle.js';
import { deriveIdentity } from '../../protocol/identity.js';
import { encodeQrPayload } from '../../protocol/qr-payload.js';
import { base32Encode } from '../../protocol/base32.js';
import { zbarDecode } from './zbar.js';

void t.test(
  'a batch: bundles, labels that decode with zbarimg, manifests without secrets',
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'vigil-batch-'));
    const out = join(root, 'batch-1');
    const progress: number[] = [];
    const m = await provisionBatch({
      count: 6,
      outDir: out,
      fs: new DurableFs(),
      batchId: 'test-batch',
      now: () => new Date('2026-11-22T23:00:00Z'),
      onProgress: (d) => progress.push(d),
    });
    t.same(progress, [1, 2, 3, 4, 5, 6]);
    t.equal(m.count, 6);
    t.equal(m.label.qrVersion, 4);
    t.same((await readdir(out)).sort(), [
      'bundles',
      'labels',
      'labels.pdf',
      'manifest.csv',
      'manifest.json',
    ]);
    t.same((await readdir(root)).sort(), ['batch-1'], 'no staging directory left behind');
    const manifestText = await readFile(join(out, 'manifest.json'), 'utf8');
    const csv = await readFile(join(out, 'manifest.csv'), 'utf8');
    t.equal(csv, manifestCsv(m));
    t.equal(csv.trim().split('\n').length, 7);
    const pngs: string[] = [];
    const expected: string[] = [];
    for (const d of m.devices) {
      const b = await readBundle(join(out, d.bundle));
      t.ok(b, 'bundle readable');
      if (!b) continue;
      t.equal(b.deviceId, d.deviceId);
      t.equal(b.batchId, 'test-batch');
      t.equal(b.createdAt, '2026-11-22T23:00:00.000Z');
      t.equal(d.ssid, deriveIdentity(b.secret, b.deviceId).ssid);
      const bundleFile = join(out, d.bundle, 'device.json');
      t.equal((await stat(bundleFile)).mode & 0o777, 0o600);
      t.equal(
        createHash('sha256')
          .update(await readFile(bundleFile))
          .digest('hex'),
        d.bundleSha256,
      );
      const secretForms = [
        base32Encode(b.secret),
        Buffer.from(b.secret).toString('hex'),
        Buffer.from(b.secret).toString('base64'),
      ];
      const { wpaPassphrase } = deriveIdentity(b.secret, b.deviceId);
      for (const s of [...secretForms, wpaPassphrase]) {
        t.notOk(manifestText.includes(s), 'manifest.json has no secret');
        t.notOk(csv.includes(s), 'manifest.csv has no secret');
      }
      const svg = await readFile(join(out, d.labelSvg), 'utf8');
      t.match(svg, /<svg/);
      pngs.push(join(out, d.labelPng));
      expected.push(encodeQrPayload(b));
    }
    t.same(await zbarDecode(pngs), expected, 'every PNG label decodes (zbarimg) to its bundle');
    t.match(manifestText, /"format": "vigil-batch-manifest"/);
  },
);

void t.test('refuses to overwrite an existing batch (or any existing path)', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-batch-'));
  const out = join(root, 'b');
  await mkdir(out);
  await writeFile(join(out, 'keep'), 'precious');
  await t.rejects(provisionBatch({ count: 1, outDir: out, fs: new DurableFs() }), {
    code: 'EBATCH_EXISTS',
  });
  t.equal(await readFile(join(out, 'keep'), 'utf8'), 'precious', 'untouched');
  const empty = join(root, 'empty');
  await mkdir(empty);
  await t.rejects(
    provisionBatch({ count: 1, outDir: empty, fs: new DurableFs() }),
    BatchError,
    'even an empty directory',
  );
});

void t.test('bad input', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-batch-'));
  for (const count of [0, -1, 1.5, 10_001, Number.NaN]) {
    await t.rejects(provisionBatch({ count, outDir: join(root, 'x'), fs: new DurableFs() }), {
      code: 'EBATCH_INPUT',
    });
  }
  await t.rejects(
    provisionBatch({ count: 1, outDir: join(root, 'x'), fs: new DurableFs(), batchId: '../evil' }),
    {
      code: 'EBATCH_INPUT',
    },
  );
  let n = 0;
  const repeating = (k: number) => new Uint8Array(k).fill(n++ % 2 === 0 ? 1 : 2);
  // ids repeat every second device: the duplicate check must fire, and nothing is left behind
  await t.rejects(
    provisionBatch({ count: 3, outDir: join(root, 'dup'), fs: new DurableFs(), random: repeating }),
    {
      code: 'EBATCH_DUPLICATE',
    },
  );
  t.same(await readdir(root), [], 'failed batches leave nothing');
  t.match(
    defaultBatchId(new Date('2026-01-02T03:04:05.678Z'), () => new Uint8Array([1, 2, 3])),
    '20260102T030405Z-010203',
  );
});

void t.test('a crash midway leaves no batch at --out and a rerun succeeds', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-batch-'));
  const out = join(root, 'b');
  const crash = new CrashController({ at: 12, mode: 'kill', delivery: 'throw' });
  await t.rejects(
    provisionBatch({ count: 3, outDir: out, fs: new DurableFs(crash) }),
    SimulatedCrash,
  );
  t.same(await readdir(root), [], 'staging removed, nothing published');
  const m = await provisionBatch({ count: 3, outDir: out, fs: new DurableFs() });
  t.equal(m.devices.length, 3);
});
