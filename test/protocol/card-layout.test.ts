// The card layout is one table (protocol/card-layout.ts); the image builder and the OTA
// tryboot backend both derive their partition numbers from it. This test builds the
// image's layout and boot files and the backend's view of the same card from that code and
// checks they agree: autoboot.txt as the image writes it, read by the backend on a boot of
// each slot, and the commit it writes back, read as the image's partitions.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { BOARDS } from '../../image/boards.js';
import { partitionOf, partUuid, planLayout } from '../../image/layout.js';
import { bootOverlay, cmdlineTxt, fstab, IMAGE_PATHS } from '../../image/overlay.js';
import { parseAutoboot, SELECTOR_DIR, TrybootSelector } from '../../ota/tryboot.js';
import {
  AUTOBOOT_PARTITION,
  BOOT_PARTITIONS,
  CARD_PARTITIONS,
  CARD_ROLES,
  cardPartUuid,
  ROOT_PARTITIONS,
} from '../../protocol/card-layout.js';
import { tempDir } from '../ota/helpers.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

for (const board of Object.values(BOARDS)) {
  t.test(`${board.name}: the image plans the card's partitions`, async (tt) => {
    const layout = planLayout(board.sizes);
    for (const role of CARD_ROLES) {
      tt.equal(partitionOf(layout, role).number, CARD_PARTITIONS[role], role);
      tt.equal(partUuid(layout, role), cardPartUuid(role), `${role} PARTUUID`);
    }
    tt.equal(layout.partitions.length, CARD_ROLES.length, 'nothing else');
    for (const slot of ['a', 'b'] as const) {
      const boot = partitionOf(layout, slot === 'a' ? 'boot-a' : 'boot-b');
      tt.ok(boot.number <= 4 && boot.type === 'c', `boot ${slot}: a primary FAT partition`);
      tt.match(
        cmdlineTxt(board, layout, slot),
        new RegExp(`root=PARTUUID=${cardPartUuid(slot === 'a' ? 'root-a' : 'root-b')} `),
        `slot ${slot} boots root partition ${String(ROOT_PARTITIONS[slot])}`,
      );
    }
  });
}

t.test('the image writes autoboot.txt the tryboot backend reads and commits', async (tt) => {
  const board = BOARDS['rpi-arm64'];
  tt.ok(board.piFirmware, 'a board with the Pi firmware');
  const layout = planLayout(board.sizes);
  const bootA = partitionOf(layout, 'boot-a');
  const bootB = partitionOf(layout, 'boot-b');
  tt.equal(bootA.number, AUTOBOOT_PARTITION, 'autoboot.txt sits on boot A: the first partition');
  tt.equal(bootA.number, 1, 'the bootloader reads autoboot.txt from partition 1');

  // Boot A's files as the image builds them; autoboot.txt among them.
  const files = bootOverlay(board, layout, '6.1.0-test-arm64');
  const autoboot = files.find((f) => f.path === '/autoboot.txt')?.content;
  if (autoboot === undefined) throw new Error('the image writes no autoboot.txt');
  tt.same(
    parseAutoboot(autoboot),
    { normal: bootA.number, tryboot: bootB.number, abEnabled: true },
    'the image: boot A committed, boot B on tryboot',
  );

  // Boot A mounted where the backend looks for it, holding the image's autoboot.txt.
  tt.equal(IMAGE_PATHS.firmware, SELECTOR_DIR, 'the backend reads the partition the image mounts');
  tt.match(fstab(layout), new RegExp(`PARTUUID=${cardPartUuid('boot-a')} ${SELECTOR_DIR} vfat`));
  const root = await tempDir('vigil-card-');
  tt.teardown(() => rm(root, { recursive: true, force: true }));
  const selectorDir = join(root, SELECTOR_DIR);
  const dt = join(root, 'proc', 'device-tree', 'chosen', 'bootloader');
  await mkdir(selectorDir, { recursive: true });
  await mkdir(dt, { recursive: true });
  await writeFile(join(selectorDir, 'autoboot.txt'), autoboot);
  const reboots: (string | undefined)[] = [];
  const sel = new TrybootSelector({
    selectorDir,
    bootloaderDt: dt,
    fs: new DurableFs(),
    reboot: { reboot: async (arg) => void reboots.push(arg) },
  });

  // The first boot of a fresh card: the bootloader booted boot A without tryboot.
  await writeFile(join(dt, 'partition'), u32(bootA.number));
  await writeFile(join(dt, 'tryboot'), u32(0));
  tt.same(await sel.status(), { committed: 'a', running: 'a', trial: false });
  await sel.tryOther();
  tt.same(reboots, ['0 tryboot']);

  // The trial boot: the bootloader followed [tryboot] to boot B.
  await writeFile(join(dt, 'partition'), u32(bootB.number));
  await writeFile(join(dt, 'tryboot'), u32(1));
  tt.same(await sel.status(), { committed: 'a', running: 'b', trial: true });
  tt.equal(await sel.commitRunning(), 'b');
  tt.same(
    parseAutoboot(await readFile(join(selectorDir, 'autoboot.txt'), 'utf8')),
    { normal: bootB.number, tryboot: bootA.number, abEnabled: true },
    'after the commit: boot B in [all], boot A on tryboot',
  );
  tt.same(BOOT_PARTITIONS, { a: bootA.number, b: bootB.number });
  tt.notOk(
    Object.values(BOOT_PARTITIONS).includes(partitionOf(layout, 'provisioning').number),
    'the provisioning FAT is never a boot slot',
  );
});
