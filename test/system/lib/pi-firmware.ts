/**
 * The qemu harness playing the Raspberry Pi firmware between boots of the twin:
 * read autoboot.txt from partition 1 (protocol/card-layout.ts), take the
 * one-shot tryboot flag (the twin's backend leaves TRYBOOT_FLAG_FILE on the same
 * FAT instead of the Pi's reboot argument) and delete it before the boot, as the
 * bootloader clears its flag, then load the chosen boot partition's kernel,
 * initrd and cmdline.txt and tell the guest what it booted
 * (`vigil.boot_partition=N vigil.tryboot=0|1`, read by ota/rauc-backend.ts).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../../hw/os/run.js';
import {
  fatList,
  fatRead,
  mtoolsEnv,
  mtoolsTarget,
  partitionNumbered,
  readTable,
} from '../../../image/disk.js';
import { TRYBOOT_FLAG_FILE } from '../../../ota/rauc-backend.js';
import { AUTOBOOT_PARTITION, parseAutoboot } from '../../../protocol/card-layout.js';

export interface FirmwareBoot {
  readonly partition: number;
  readonly tryboot: boolean;
  readonly kernel: string;
  readonly initrd: string;
  /** The slot's cmdline.txt plus what the firmware tells the guest. */
  readonly append: string;
}

export async function playPiFirmware(disk: string, workDir: string): Promise<FirmwareBoot> {
  const table = await readTable(disk);
  const selector = mtoolsTarget(disk, partitionNumbered(table, AUTOBOOT_PARTITION, disk));
  const autoboot = parseAutoboot((await fatRead(selector, 'autoboot.txt')).toString('utf8'));
  const tryboot = (await fatList(selector)).includes(TRYBOOT_FLAG_FILE);
  if (tryboot) {
    // one shot: cleared before the boot, so any later reset boots the committed slot
    await run('mdel', ['-i', selector, `::/${TRYBOOT_FLAG_FILE}`], {
      env: mtoolsEnv(),
      timeoutMs: 60_000,
    });
  }
  const partition = tryboot && autoboot.abEnabled ? autoboot.tryboot : autoboot.normal;
  const boot = mtoolsTarget(disk, partitionNumbered(table, partition, disk));
  const files = await fatList(boot);
  const kernelName = files.find((f) => f.startsWith('vmlinuz-'));
  const initrdName = files.find((f) => f.startsWith('initrd.img-'));
  if (kernelName === undefined)
    throw new Error(`boot partition ${String(partition)} has no kernel: ${files.join(', ')}`);
  const kernel = join(workDir, `p${String(partition)}-${kernelName}`);
  await writeFile(kernel, await fatRead(boot, kernelName));
  let initrd = '';
  if (initrdName !== undefined) {
    initrd = join(workDir, `p${String(partition)}-${initrdName}`);
    await writeFile(initrd, await fatRead(boot, initrdName));
  }
  const cmdline = (await fatRead(boot, 'cmdline.txt')).toString('utf8').trim();
  return {
    partition,
    tryboot,
    kernel,
    initrd,
    append: `${cmdline} vigil.boot_partition=${String(partition)} vigil.tryboot=${tryboot ? '1' : '0'}`,
  };
}
