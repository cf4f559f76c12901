import t from 'tap';
import { mkdtemp, rm, truncate, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  UtilLinuxBlockDevices,
  VIGIL_BLANK_MARKER,
  parseExport,
  parseLsblk,
  sampleDevice,
} from '../../../hw/luks/block.js';
import { which } from '../../../hw/os/run.js';

const haveTools =
  (await which('mkfs.ext4')) !== null &&
  (await which('blkid')) !== null &&
  (await which('lsblk')) !== null;

void t.test('parsers', async (t) => {
  const devs = parseLsblk(
    JSON.stringify({
      blockdevices: [
        {
          path: '/dev/vdb',
          type: 'disk',
          size: 1073741824,
          partlabel: null,
          parttype: null,
          partuuid: null,
          fstype: null,
          label: null,
        },
        {
          path: '/dev/vdb1',
          type: 'part',
          size: '536870912',
          partlabel: 'vigil-data',
          parttype: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
          partuuid: 'ABC',
          fstype: 'crypto_LUKS',
          label: 'vigil-data',
        },
      ],
    }),
  );
  t.same(devs[1], {
    path: '/dev/vdb1',
    type: 'part',
    sizeBytes: 536870912,
    partLabel: 'vigil-data',
    partType: '0fc63daf-8483-4772-8e79-3d69d8477de4',
    partUuid: 'abc',
    fsType: 'crypto_LUKS',
    label: 'vigil-data',
  });
  t.equal(devs[0]?.partLabel, undefined);
  t.throws(() => parseLsblk('nope'), { code: 'EBLOCK' });
  t.throws(() => parseLsblk('{"x":1}'), { code: 'EBLOCK' });
  t.same(parseExport('DEVNAME=/x\nTYPE=ext4\nPART_ENTRY_NAME=vigil-data\n\n'), {
    DEVNAME: '/x',
    TYPE: 'ext4',
    PART_ENTRY_NAME: 'vigil-data',
  });
});

void t.test('sampling tells blank from data', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-block-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = join(dir, 'd.img');
  await writeFile(f, '');
  await truncate(f, 8 * 1024 * 1024);
  t.equal(await sampleDevice(f), 'zero');
  const fh = await open(f, 'r+');
  // a LUKS volume whose header was wiped: ciphertext (random) everywhere past the header
  await fh.write(randomBytes(4 * 1024 * 1024), 0, 4 * 1024 * 1024, 4 * 1024 * 1024);
  await fh.close();
  t.equal(await sampleDevice(f), 'data', 'data past a wiped head is seen');
  const g = join(dir, 'g.img');
  await writeFile(g, VIGIL_BLANK_MARKER);
  await truncate(g, 1024 * 1024);
  t.equal(await sampleDevice(g), 'vigil-blank');
  const h = join(dir, 'h.img');
  await writeFile(h, 'hello');
  t.equal(await sampleDevice(h), 'data');
});

void t.test(
  'real mkfs.ext4, blkid and e2fsck on a file',
  { skip: haveTools ? false : 'util-linux/e2fsprogs missing' },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vigil-block-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const f = join(dir, 'fs.img');
    await writeFile(f, '');
    await truncate(f, 16 * 1024 * 1024);
    const b = new UtilLinuxBlockDevices();
    t.same(await b.probe(f), {}, 'nothing recognised on zeros');
    await b.mkfsExt4(f, 'vigil-data');
    t.match(await b.probe(f), { TYPE: 'ext4', LABEL: 'vigil-data' });
    t.equal(await b.fsck(f), true);
    t.equal(await sampleDevice(f), 'data', 'a filesystem is data');
    const list = await b.list();
    t.ok(Array.isArray(list) && list.every((d) => typeof d.path === 'string'), 'lsblk JSON parsed');
    t.equal(await b.isMounted(join(dir, 'nowhere')), false);
    const st = await b.fsStats(dir);
    t.ok(st.totalBytes > 0 && st.freeBytes >= 0);
    await b.unmount(join(dir, 'nowhere')).catch(() => undefined);
  },
);
