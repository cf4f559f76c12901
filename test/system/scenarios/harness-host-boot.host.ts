// Harness self-test of host scenarios (what the image area uses to boot its own disk image
// with its own kernel): boot the cached guest kernel with no root disk and check the console
// shows the kernel starting and then failing to mount a root filesystem.
// @timeout 240
import { join } from 'node:path';
import type { HostScenario } from '../lib/types.js';

const run: HostScenario = async (h) => {
  const guest = h.guest;
  if (guest === undefined) throw new Error('no harness guest (a @beside scenario gets none)');
  const r = await h.boot({
    kernel: guest.kernel,
    append: 'console=ttyS0 panic=-1 no_timer_check root=/dev/vda',
    disks: [],
    memoryMiB: 512,
    timeoutMs: 200_000,
    consoleLog: join(h.workDir, 'console.log'),
    doneLine: 'Kernel panic',
  });
  const banner = r.lines.find((l) => l.includes('Linux version'));
  if (banner === undefined) throw new Error(`no kernel banner on the console (${r.outcome})`);
  if (!banner.includes(guest.kernelRelease))
    throw new Error(`banner is not ${guest.kernelRelease}: ${banner}`);
  if (!r.lines.some((l) => l.includes('Unable to mount root fs'))) {
    throw new Error(`expected "Unable to mount root fs" (outcome ${r.outcome})`);
  }
  h.log(`kernel ${guest.kernelRelease} booted and stopped as expected in ${r.wallMs} ms`);
};
export default run;
