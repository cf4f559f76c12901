import t from 'tap';
import { join } from 'node:path';
import { readTable } from '../../image/disk.js';
import {
  compareWithPlan,
  partitionOf,
  partUuid,
  planLayout,
  sfdiskScript,
  LayoutError,
} from '../../image/layout.js';
import { run } from '../../hw/os/run.js';
import { BOARDS } from '../../image/boards.js';

t.test('the planned A/B layout: numbers, roles, order, alignment', async (t) => {
  const l = planLayout(BOARDS['rpi-arm64'].sizes);
  t.same(
    l.partitions.map((p) => [p.number, p.role]),
    [
      [1, 'boot-a'],
      [2, 'boot-b'],
      [3, 'provisioning'],
      [4, 'extended'],
      [5, 'root-a'],
      [6, 'root-b'],
      [7, 'data'],
    ],
  );
  t.equal(partitionOf(l, 'boot-a').startMiB, 4);
  t.ok(partitionOf(l, 'boot-a').bootable);
  // data is last so it can grow to the end of the card
  const data = partitionOf(l, 'data');
  t.equal(data.startMiB + data.sizeMiB, l.totalMiB);
  const ext = partitionOf(l, 'extended');
  t.equal(ext.startMiB + ext.sizeMiB, l.totalMiB);
  // root A and B have the same size (OTA writes one into the other's place)
  t.equal(partitionOf(l, 'root-a').sizeMiB, partitionOf(l, 'root-b').sizeMiB);
  t.equal(partUuid(l, 'root-a'), '5649474c-05');
  t.equal(partUuid(l, 'root-b'), '5649474c-06');
  t.equal(partUuid(l, 'data'), '5649474c-07');
  // no overlaps among primaries and logicals
  const real = l.partitions
    .filter((p) => p.role !== 'extended')
    .sort((a, b) => a.startMiB - b.startMiB);
  for (let i = 1; i < real.length; i++)
    t.ok(
      real[i]!.startMiB >= real[i - 1]!.startMiB + real[i - 1]!.sizeMiB,
      `${real[i]!.role} does not overlap`,
    );
});

t.test('bad sizes are rejected', async (t) => {
  t.throws(
    () => planLayout({ bootMiB: 0, rootMiB: 1, provisioningMiB: 1, dataMiB: 1 }),
    LayoutError,
  );
  t.throws(
    () => planLayout({ bootMiB: 16, rootMiB: 1, provisioningMiB: 1, dataMiB: 1 }),
    /at least 32/,
  );
  t.throws(
    () => planLayout({ bootMiB: 64, rootMiB: 1.5, provisioningMiB: 1, dataMiB: 1 }),
    LayoutError,
  );
});

t.test('sfdisk writes exactly the plan onto a file, and reads it back', async (t) => {
  const dir = t.testdir();
  const l = planLayout({ bootMiB: 32, rootMiB: 64, provisioningMiB: 16, dataMiB: 8 });
  const img = join(dir, 'x.img');
  await run('truncate', ['-s', `${l.totalMiB}M`, img]);
  await run('sfdisk', ['--quiet', img], { stdin: sfdiskScript(l) });
  const table = await readTable(img);
  t.equal(table.diskId, 0x5649474c);
  t.same(compareWithPlan(l, table.partitions), []);
  const dump = (await run('sfdisk', ['-d', img])).stdout.toString();
  t.match(dump, /label-id: 0x5649474c/);
  t.match(dump, /x\.img7 : start=\s*\d+, size=\s*16384, type=83/);
  // a different table is reported precisely
  const moved = table.partitions.map((p) => (p.number === 5 ? { ...p, start: p.start + 2048 } : p));
  t.match(compareWithPlan(l, moved).join('\n'), /partition 5 \(root-a\) starts at sector/);
  t.match(
    compareWithPlan(
      l,
      table.partitions.filter((p) => p.number !== 7),
    ).join('\n'),
    /partition 7 \(data\) is missing/,
  );
});
