import t from 'tap';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  fatLabel,
  fatList,
  fatRead,
  mtoolsTarget,
  partitionNumbered,
  readTable,
} from '../../image/disk.js';
import { PROVISIONING_PARTITION, ProvisionError, provisionImage } from '../../image/provision.js';
import { run } from '../../hw/os/run.js';
import { BundleError, encodeBundle } from '../../protocol/provisioning-bundle.js';
import { bundleDir, smallImage } from './helpers.js';

t.test(
  'writes the bundle into the provisioning partition of a built image, no rebuild',
  async (t) => {
    const dir = t.testdir();
    const { image } = await smallImage(dir);
    const before = await readFile(image);
    const b = await bundleDir(join(dir, 'bundle'));
    const r = await provisionImage(image, b.dir);
    t.same(r.files, ['device.json']);
    t.equal(r.partition, PROVISIONING_PARTITION);
    const table = await readTable(image);
    const target = mtoolsTarget(image, partitionNumbered(table, 3, image));
    t.equal(await fatLabel(target), 'VIGILPROV');
    t.same(await fatList(target), ['device.json']);
    t.equal((await fatRead(target, 'device.json')).toString(), b.json);
    // everything outside the provisioning partition is untouched
    const after = await readFile(image);
    const p = partitionNumbered(table, 3, image);
    t.ok(
      after.subarray(0, p.start * 512).equals(before.subarray(0, p.start * 512)),
      'bytes before p3 unchanged',
    );
    t.ok(
      after.subarray((p.start + p.size) * 512).equals(before.subarray((p.start + p.size) * 512)),
      'bytes after p3 unchanged',
    );
    // the boot partition still reads fine
    t.same(await fatList(mtoolsTarget(image, partitionNumbered(table, 1, image))), [
      'cmdline.txt',
      'sub/nested.dtb',
    ]);
  },
);

t.test('re-provisioning leaves nothing of the previous device on the partition', async (t) => {
  const dir = t.testdir();
  const { image } = await smallImage(dir);
  const first = await bundleDir(join(dir, 'b1'), 7);
  await provisionImage(image, first.dir);
  const oldSecret = JSON.parse(first.json).secret as string;
  t.ok((await readFile(image)).includes(oldSecret), 'first secret is on the partition');
  const second = await bundleDir(join(dir, 'b2'), 9);
  await provisionImage(image, second.dir);
  const bytes = await readFile(image);
  t.notOk(
    bytes.includes(oldSecret),
    'first secret is gone from the whole image, free clusters included',
  );
  t.ok(bytes.includes(JSON.parse(second.json).secret as string));
});

t.test('a single device.json file works as the bundle too', async (t) => {
  const dir = t.testdir();
  const { image } = await smallImage(dir);
  const b = await bundleDir(join(dir, 'bundle'));
  const r = await provisionImage(image, join(b.dir, 'device.json'));
  t.same(r.files, ['device.json']);
});

t.test('bad input: clear errors, image untouched', async (t) => {
  const dir = t.testdir();
  const { image } = await smallImage(dir);
  const before = await readFile(image);
  await t.rejects(provisionImage(image, join(dir, 'nope')), /does not exist/);
  await mkdir(join(dir, 'empty'));
  await t.rejects(provisionImage(image, join(dir, 'empty')), /has no device.json/);
  await mkdir(join(dir, 'bad'));
  await writeFile(
    join(dir, 'bad', 'device.json'),
    '{"format":"vigil-provisioning-bundle","version":1}',
  );
  await t.rejects(provisionImage(image, join(dir, 'bad')), BundleError);
  const b = await bundleDir(join(dir, 'sub'));
  await mkdir(join(b.dir, 'nested'));
  await t.rejects(provisionImage(image, b.dir), /not a regular file/);
  t.ok((await readFile(image)).equals(before), 'image unchanged after every failure');
  // not a Vigil image
  const other = join(dir, 'other.img');
  await run('truncate', ['-s', '64M', other]);
  await run('sfdisk', ['--quiet', other], { stdin: 'label: dos\nlabel-id: 0x12345678\n,32M,c\n' });
  const good = await bundleDir(join(dir, 'good'));
  await t.rejects(provisionImage(other, good.dir), ProvisionError);
  await t.rejects(provisionImage(other, good.dir), /not a Vigil image/);
});

t.test('a bundle with services: the relay, OTA channel and trust root go in', async (t) => {
  const dir = t.testdir();
  const { image } = await smallImage(dir);
  const b = join(dir, 'bundle');
  await mkdir(b, { recursive: true });
  const json = encodeBundle({
    deviceId: 'ABCDEFGHIJKLMNOP',
    secret: new Uint8Array(32).fill(3),
    batchId: 'batch-1',
    createdAt: '2026-11-22T00:00:00.000Z',
    relay: { url: 'https://relay.example.net', enrollToken: 'enroll-secret' },
    ota: { repositoryUrl: 'https://updates.example.net', channel: 'beta' },
  });
  await writeFile(join(b, 'device.json'), json, { mode: 0o600 });
  const root = '{"signed":{"_type":"root"},"signatures":[]}';
  await writeFile(join(b, 'ota-root.json'), root);
  const r = await provisionImage(image, b);
  t.same(r.files, ['device.json', 'ota-root.json']);
  t.same(r.services, {
    relay: 'https://relay.example.net',
    otaChannel: 'beta',
    otaRepository: 'https://updates.example.net',
    otaRoot: true,
  });
  const target = mtoolsTarget(image, partitionNumbered(await readTable(image), 3, image));
  t.equal((await fatRead(target, 'device.json')).toString(), json);
  t.equal((await fatRead(target, 'ota-root.json')).toString(), root);
  // a trust root that is not one is refused before anything is written
  const before = await readFile(image);
  await writeFile(join(b, 'ota-root.json'), '{"signed":{"_type":"targets"}}');
  await t.rejects(provisionImage(image, b), {
    constructor: ProvisionError,
    message: /ota-root\.json is not TUF root metadata/,
  });
  t.ok((await readFile(image)).equals(before), 'image untouched');
});
