// The card layout is one table (protocol/card-layout.ts); the image builder and the OTA
// RAUC backend both derive their partition numbers from it. This test builds the
// image's layout and boot files and the backend's view of the same card from that code and
// checks they agree: autoboot.txt as the image writes it, read by the backend on a boot of
// each slot, and the commit it writes back, read as the image's partitions.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { BOARDS } from '../../image/boards.js';
import { partitionOf, partUuid, planLayout } from '../../image/layout.js';
import { bootOverlay, cmdlineTxt, fstab, IMAGE_PATHS, rootOverlay } from '../../image/overlay.js';
import { PiFirmware, RaucBootBackend } from '../../ota/rauc-backend.js';
import {
  AUTOBOOT_PARTITION,
  autobootTxt,
  BOOT_PARTITIONS,
  CARD_PARTITIONS,
  CARD_ROLES,
  cardPartUuid,
  FIRMWARE_MOUNT,
  parseAutoboot,
  ROOT_PARTITIONS,
} from '../../protocol/card-layout.js';
import {
  parseRaucSlots,
  RAUC_PATHS,
  raucCompatible,
  SLOT_BOOTNAMES,
} from '../../protocol/rauc-system.js';
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

t.test('autoboot.txt: written and read back, hand edits, bad ones refused', async (tt) => {
  const a = autobootTxt('a');
  tt.equal(a, '[all]\ntryboot_a_b=1\nboot_partition=1\n[tryboot]\nboot_partition=2\n');
  tt.same(parseAutoboot(a), { normal: 1, tryboot: 2, abEnabled: true });
  tt.same(parseAutoboot(autobootTxt('b')), { normal: 2, tryboot: 1, abEnabled: true });
  tt.same(
    parseAutoboot(
      '# comment\r\n[all]\r\nboot_partition=2 # x\r\n[tryboot]\r\nboot_partition=3\r\n',
    ),
    { normal: 2, tryboot: 3, abEnabled: false },
  );
  tt.throws(() => parseAutoboot('[all]\nboot_partition=2\n'), /no \[all\] and \[tryboot\]/);
  tt.throws(
    () => parseAutoboot('[all]\nboot_partition=x\n[tryboot]\nboot_partition=3'),
    /bad boot_partition "x"/,
  );
});

t.test('the image writes autoboot.txt the RAUC backend reads and commits', async (tt) => {
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
  tt.equal(
    IMAGE_PATHS.firmware,
    FIRMWARE_MOUNT,
    'the backend reads the partition the image mounts',
  );
  tt.match(fstab(layout), new RegExp(`PARTUUID=${cardPartUuid('boot-a')} ${FIRMWARE_MOUNT} vfat`));
  const root = await tempDir('vigil-card-');
  tt.teardown(() => rm(root, { recursive: true, force: true }));
  const selectorDir = join(root, FIRMWARE_MOUNT);
  const dt = join(root, 'proc', 'device-tree', 'chosen', 'bootloader');
  await mkdir(selectorDir, { recursive: true });
  await mkdir(dt, { recursive: true });
  await writeFile(join(selectorDir, 'autoboot.txt'), autoboot);
  // the Pi's device tree as the firmware leaves it; the reboot is recorded instead
  const pi = new PiFirmware(dt, new DurableFs());
  const reboots: boolean[] = [];
  const backend = new RaucBootBackend({
    selectorDir,
    fs: new DurableFs(),
    firmware: {
      booted: () => pi.booted(),
      reboot: (tryboot) => {
        reboots.push(tryboot);
        return Promise.resolve();
      },
    },
  });

  // The first boot of a fresh card: the bootloader booted boot A without tryboot.
  await writeFile(join(dt, 'partition'), u32(bootA.number));
  await writeFile(join(dt, 'tryboot'), u32(0));
  tt.same(await backend.booted(), { slot: 'a', trial: false });
  tt.equal(await backend.committed(), 'a');
  await backend.setPrimary('b');
  await backend.rebootIntoPrimary();
  tt.same(reboots, [true], 'one reboot through tryboot');

  // The trial boot: the bootloader followed [tryboot] to boot B.
  await writeFile(join(dt, 'partition'), u32(bootB.number));
  await writeFile(join(dt, 'tryboot'), u32(1));
  tt.same(await backend.booted(), { slot: 'b', trial: true });
  tt.equal(await backend.committed(), 'a', 'nothing committed before the trial says so');
  await backend.setState('b', 'good');
  tt.equal(await backend.committed(), 'b');
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

// RAUC's view (system.conf, generated from the card table) against the image's partitions and
// the custom backend's: one install of slot B walked through all three.
for (const board of Object.values(BOARDS)) {
  t.test(`${board.name}: system.conf, the image and the RAUC backend agree`, async (tt) => {
    const layout = planLayout(board.sizes);
    const files = rootOverlay(board, layout);
    const conf = files.find((f) => f.path === RAUC_PATHS.systemConf)?.content;
    if (conf === undefined) throw new Error('the image ships no /etc/rauc/system.conf');
    tt.match(conf, new RegExp(`^compatible=${raucCompatible(board.name)}$`, 'm'));
    tt.match(conf, new RegExp(`^bootloader-custom-backend=${RAUC_PATHS.backend}$`, 'm'));
    tt.ok(
      files.some((f) => f.path === RAUC_PATHS.backend && (f.mode & 0o111) !== 0),
      'the image ships the backend, executable',
    );
    const slots = parseRaucSlots(conf);
    tt.same(Object.keys(slots).sort(), ['boot.0', 'boot.1', 'rootfs.0', 'rootfs.1']);
    const byPartuuid = (s: Record<string, string> | undefined): string =>
      (s?.device ?? '').replace('/dev/disk/by-partuuid/', '');
    for (const [i, slot] of (['a', 'b'] as const).entries()) {
      const root = slots[`rootfs.${String(i)}`];
      const boot = slots[`boot.${String(i)}`];
      tt.equal(byPartuuid(root), partUuid(layout, slot === 'a' ? 'root-a' : 'root-b'));
      tt.equal(byPartuuid(boot), partUuid(layout, slot === 'a' ? 'boot-a' : 'boot-b'));
      tt.equal(root?.type, 'ext4');
      tt.equal(boot?.type, 'vfat');
      tt.equal(boot?.parent, `rootfs.${String(i)}`, 'boot and root are installed together');
      // the slot's cmdline.txt says the same boot name RAUC knows the slot by
      tt.match(
        cmdlineTxt(board, layout, slot),
        new RegExp(`rauc\\.slot=${String(root?.bootname)}\\n`),
      );
      tt.equal(root?.bootname, SLOT_BOOTNAMES[slot]);
    }

    // The backend on the image's own autoboot.txt: install into B, trial boot, commit.
    const autoboot = bootOverlay(board, layout, '6.1.0-test').find(
      (f) => f.path === '/autoboot.txt',
    )?.content;
    if (autoboot === undefined) throw new Error('the image writes no autoboot.txt');
    const dir = await tempDir('vigil-rauc-card-');
    tt.teardown(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'autoboot.txt'), autoboot);
    let booted = { partition: partitionOf(layout, 'boot-a').number, tryboot: false };
    const reboots: boolean[] = [];
    const backend = new RaucBootBackend({
      selectorDir: dir,
      fs: new DurableFs(),
      firmware: {
        booted: () => Promise.resolve(booted),
        reboot: (tb) => {
          reboots.push(tb);
          return Promise.resolve();
        },
      },
    });
    const target = slots['rootfs.1']?.bootname ?? '';
    tt.equal(await backend.handle(['get-current']), `${String(slots['rootfs.0']?.bootname)}\n`);
    await backend.handle(['set-state', target, 'bad']);
    await backend.handle(['set-primary', target]);
    tt.equal(await backend.handle(['get-primary']), `${target}\n`);
    await backend.rebootIntoPrimary();
    tt.same(reboots, [true], 'a tryboot reboot');
    // the firmware follows autoboot.txt's [tryboot]: the image's boot B
    booted = { partition: parseAutoboot(autoboot).tryboot, tryboot: true };
    tt.equal(booted.partition, partitionOf(layout, 'boot-b').number);
    tt.equal(await backend.handle(['get-current']), `${target}\n`);
    await backend.handle(['set-state', target, 'good']);
    tt.equal(
      parseAutoboot(await readFile(join(dir, 'autoboot.txt'), 'utf8')).normal,
      partitionOf(layout, 'boot-b').number,
      "the commit names the image's boot B, whose cmdline boots system.conf's rootfs.1",
    );
  });
}
