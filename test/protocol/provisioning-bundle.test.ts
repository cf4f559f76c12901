import t from 'tap';
import { mkdtemp, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableFs } from '../../hw/os/fs.js';
import { newIdentity } from '../../protocol/identity.js';
import {
  BUNDLE_FILE,
  BundleError,
  encodeBundle,
  parseBundle,
  readBundle,
} from '../../protocol/provisioning-bundle.js';
import { writeBundle } from '../../provisioning/bundle.js';
import { base32Encode } from '../../protocol/base32.js';

const sample = () => ({
  ...newIdentity(),
  batchId: 'B-2026-11-22',
  createdAt: '2026-11-22T23:00:00.000Z',
});

void t.test('write then read a bundle directory; private permissions', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-bundle-'));
  const dir = join(root, 'vigil-provisioning');
  const b = sample();
  const path = await writeBundle(new DurableFs(), dir, b);
  t.equal(path, join(dir, BUNDLE_FILE));
  t.equal((await stat(path)).mode & 0o777, 0o600);
  t.equal((await stat(dir)).mode & 0o777, 0o700);
  const back = await readBundle(dir);
  t.same(back, b);
  t.equal(await readBundle(join(root, 'absent')), undefined, 'no bundle -> undefined');
  const json = JSON.parse(await readFile(path, 'utf8'));
  t.equal(json.format, 'vigil-provisioning-bundle');
  t.equal(json.version, 1);
});

void t.test('bad bundles fail with the field named and the secret never echoed', async (t) => {
  const b = sample();
  const good = JSON.parse(encodeBundle(b));
  const secretText = base32Encode(b.secret);
  const bad: [unknown, RegExp][] = [
    [{ ...good, version: 2 }, /version/],
    [{ ...good, format: 'x' }, /format/],
    [{ ...good, deviceId: 'abc' }, /deviceId/],
    [{ ...good, secret: secretText.slice(0, 40) }, /secret/],
    [{ ...good, createdAt: 'yesterday' }, /createdAt/],
    [{ ...good, batchId: '../x' }, /batchId/],
    [{ ...good, extra: 1 }, /invalid provisioning bundle/],
  ];
  for (const [obj, msg] of bad) {
    t.throws(() => parseBundle(JSON.stringify(obj)), msg);
    try {
      parseBundle(JSON.stringify(obj));
    } catch (e) {
      t.ok(e instanceof BundleError);
      t.notMatch((e as Error).message, secretText);
    }
  }
  t.throws(() => parseBundle('{'), /not valid JSON/);
  t.throws(() => parseBundle('x'.repeat(5000)), /larger than/);
  t.throws(() => encodeBundle({ ...b, batchId: 'bad id!' }));
  const root = await mkdtemp(join(tmpdir(), 'vigil-bundle-'));
  await mkdir(join(root, 'd'));
  await writeFile(join(root, 'd', BUNDLE_FILE), '{"format":1}');
  await t.rejects(readBundle(join(root, 'd')), BundleError);
  await mkdir(join(root, 'e', BUNDLE_FILE), { recursive: true });
  await t.rejects(readBundle(join(root, 'e')), /cannot read/);
});
