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

void t.test('services: optional members; an old bundle still parses', async (t) => {
  const old = sample();
  const oldText = encodeBundle(old);
  t.notMatch(oldText, /relay|ota/, 'a bundle without services is written as before');
  t.same(parseBundle(oldText), old);
  const withServices = {
    ...sample(),
    relay: { url: 'https://relay.example.net', enrollToken: 'enroll-me' },
    ota: { repositoryUrl: 'https://updates.example.net/vigil', channel: 'beta' },
  };
  t.same(parseBundle(encodeBundle(withServices)), withServices);
  const json = JSON.parse(encodeBundle(withServices));
  t.equal(json.version, 1, 'same format version');
  const bad = (patch: Record<string, unknown>) =>
    JSON.stringify({ ...JSON.parse(oldText), ...patch });
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { relay: { url: 'http://relay.example.net' } },
      /^invalid provisioning bundle \(relay\.url\): must be https/,
    ],
    [{ relay: { url: 'ftp://x' } }, /\(relay\.url\): must be https, not ftp$/],
    [
      { relay: { url: 'https://r', enrollToken: '' } },
      /\(relay\.enrollToken\): must not be empty$/,
    ],
    [{ ota: { repositoryUrl: 'https://u', channel: 'NO' } }, /\(ota\.channel\): must be 1-32/],
    [{ ota: { repositoryUrl: 'https://u' } }, /\(ota\.channel\)/],
    [{ relay: { url: 'https://r', port: 1 } }, /\(relay\)/],
  ];
  for (const [patch, why] of cases) {
    try {
      parseBundle(bad(patch));
      t.fail(`accepted ${JSON.stringify(patch)}`);
    } catch (e) {
      t.ok(e instanceof BundleError);
      const msg = (e as Error).message;
      t.match(msg, why);
      t.notMatch(msg, /\n/, 'one line');
      t.notOk(msg.includes(JSON.parse(oldText).secret), 'secret not echoed');
    }
  }
});
