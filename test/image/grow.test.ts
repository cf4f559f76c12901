import t from 'tap';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readTable } from '../../image/disk.js';
import type { PartitionTable } from '../../image/disk.js';
import {
  DATA_PARTUUID,
  GrowError,
  findDataDisk,
  growDataOnDevice,
  planGrowth,
} from '../../image/grow.js';
import { compareWithPlan } from '../../image/layout.js';
import { HostPaths } from '../../hw/os/host-paths.js';
import { run } from '../../hw/os/run.js';
import { smallImage } from './helpers.js';

const table = (parts: [number, number, number][], diskId = 0x5649474c): PartitionTable => ({
  label: 'dos',
  diskId,
  partitions: parts.map(([number, start, size]) => ({
    node: `d${number}`,
    number,
    start,
    size,
    type: number === 4 ? '5' : '83',
    bootable: false,
  })),
});

t.test('planGrowth: data and extended end at the last whole MiB', async (t) => {
  const tb = table([
    [1, 8192, 65536],
    [4, 100352, 30720],
    [5, 102400, 10240],
    [7, 114688, 16384],
  ]);
  const p = planGrowth(tb, 1_000_000);
  t.notOk(p.done);
  const end = Math.floor(1_000_000 / 2048) * 2048;
  t.equal(p.data.start + p.data.size, end);
  t.equal(p.extended.start + p.extended.size, end);
  t.equal(p.oldDataSize, 16384);
  t.ok(planGrowth(tb, 131072 + 100).done, 'less than 1 MiB to gain: nothing to do');
  t.throws(() => planGrowth(tb, 1000), /smaller than its partition table/);
  t.throws(() => planGrowth(table([[1, 1, 1]], 0x1234), 1000), GrowError);
  t.throws(() => planGrowth(table([[1, 8192, 100]]), 100000), /no extended partition/);
  t.throws(
    () =>
      planGrowth(
        table([
          [4, 100000, 90000],
          [7, 102048, 1000],
          [6, 110000, 50000],
        ]),
        1_000_000,
      ),
    /not the last/,
  );
});

t.test('grows a real image file after the card is bigger, once', async (t) => {
  const dir = t.testdir();
  const { image, layout } = await smallImage(dir);
  // the card is 256 MiB bigger than the image
  await run('truncate', ['-s', `${layout.totalMiB + 256}M`, image]);
  const env = { VIGIL_ROOT: join(dir, 'root') };
  const r = await growDataOnDevice({ device: image, env });
  t.match(r.message, /grown from 8 MiB to 264 MiB/);
  const tb = await readTable(image);
  const data = tb.partitions.find((p) => p.number === 7)!;
  t.equal(data.start + data.size, (layout.totalMiB + 256) * 2048);
  // everything else still matches the plan
  t.same(
    compareWithPlan(layout, tb.partitions).filter((x) => !x.includes('(data)')),
    [],
  );
  t.equal(
    (await readFile(join(dir, 'root', 'var/lib/vigil/.data-partition-grown'), 'utf8')).trim(),
    String(data.size),
  );
  const again = await growDataOnDevice({ device: image, env });
  t.match(again.message, /already fills/);
  t.ok(again.plan.done);
  // the filesystems in front are intact
  const fsck = await run('sfdisk', ['--verify', image]);
  t.equal(fsck.exitCode, 0);
});

t.test(
  'finds the card from the data partition PARTUUID (/dev and /sys under the root prefix)',
  async (t) => {
    const dir = t.testdir();
    const paths = new HostPaths(dir);
    await mkdir(paths.host('/dev/disk/by-partuuid'), { recursive: true });
    await writeFile(paths.host('/dev/mmcblk0p7'), '');
    await symlink('../../mmcblk0p7', paths.host(`/dev/disk/by-partuuid/${DATA_PARTUUID}`));
    await mkdir(paths.host('/sys/class/block'), { recursive: true });
    await symlink(
      '../../devices/platform/emmc2bus/mmc_host/mmc0/mmc0:0001/block/mmcblk0/mmcblk0p7',
      paths.host('/sys/class/block/mmcblk0p7'),
    );
    t.equal(await findDataDisk(paths), paths.host('/dev/mmcblk0'));
    await t.rejects(
      findDataDisk(new HostPaths(join(dir, 'empty'))),
      /no partition with PARTUUID 5649474c-07/,
    );
  },
);
