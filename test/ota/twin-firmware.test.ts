// The twin's boot chain without a VM: the qemu harness's stand-in for the Pi firmware
// (test/system/lib/pi-firmware.ts) on a card image with the real layout, driven by what the
// project's RAUC backend writes (autoboot.txt, the one-shot tryboot flag).
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { makeOsImage } from '../../dev/fixtures/os-image.js';
import { run } from '../../hw/os/run.js';
import { mtoolsEnv, mtoolsTarget, partitionNumbered, readTable } from '../../image/disk.js';
import { TRYBOOT_FLAG_FILE } from '../../ota/rauc-backend.js';
import { autobootTxt, cardPartUuid } from '../../protocol/card-layout.js';
import { playPiFirmware } from '../system/lib/pi-firmware.js';
import { tempDir } from './helpers.js';

t.test('autoboot.txt and the tryboot flag pick the slot; the flag is one-shot', async (tt) => {
  const dir = await tempDir('vigil-twin-fw-');
  tt.teardown(() => rm(dir, { recursive: true, force: true }));
  const { image } = await makeOsImage({ dir, version: '1.0.0', bootB: true });
  const selector = mtoolsTarget(image, partitionNumbered(await readTable(image), 1, image));
  const put = async (name: string, content: string): Promise<void> => {
    const f = join(dir, name);
    await writeFile(f, content);
    await run('mcopy', ['-o', '-i', selector, f, `::/${name}`], { env: mtoolsEnv() });
  };

  const first = await playPiFirmware(image, dir);
  tt.equal(first.partition, 1);
  tt.equal(first.tryboot, false);
  tt.match(
    first.append,
    new RegExp(
      `root=PARTUUID=${cardPartUuid('root-a')} .*rauc\\.slot=A vigil\\.boot_partition=1 vigil\\.tryboot=0$`,
    ),
  );

  // the backend asked for a trial of B (TwinFirmware.reboot(true))
  await put(TRYBOOT_FLAG_FILE, '1\n');
  const trial = await playPiFirmware(image, dir);
  tt.equal(trial.partition, 2, 'the [tryboot] partition');
  tt.equal(trial.tryboot, true);
  tt.match(
    trial.append,
    new RegExp(
      `root=PARTUUID=${cardPartUuid('root-b')} .*rauc\\.slot=B vigil\\.boot_partition=2 vigil\\.tryboot=1$`,
    ),
  );
  tt.match(trial.kernel, /p2-vmlinuz-6\.1\.0-next$/);

  // a reset during the trial (watchdog, power cut): the flag is gone, A boots
  const reset = await playPiFirmware(image, dir);
  tt.same([reset.partition, reset.tryboot], [1, false]);

  // committed B (the backend rewrote autoboot.txt): a plain boot starts B
  await put('autoboot.txt', autobootTxt('b'));
  const after = await playPiFirmware(image, dir);
  tt.same([after.partition, after.tryboot], [2, false]);
});
