// The real RAUC 1.8 (`rauc service` on a private D-Bus) driving the project's backend through
// its executable interface: `rauc status` asks the backend for the primary slot (the pending
// trial) and each slot's state; `rauc status mark-good booted` on the trial boot commits it
// (autoboot.txt rewritten), exactly as on a device. The typed adapter parses RAUC's JSON.
// Installing a verity bundle needs device-mapper, which this host's containers lack: the
// install path is covered by test/ota/os-agent.test.ts and the signature by rauc-bundle.test.ts.
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { run, which } from '../../hw/os/run.js';
import { parseRaucStatus } from '../../ota/rauc.js';
import { STATE_FILE } from '../../ota/rauc-backend.js';
import { autobootTxt } from '../../protocol/card-layout.js';
import { tempDir } from './helpers.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));

const missing: string[] = [];
for (const tool of ['rauc', 'dbus-run-session', 'gdbus'])
  if ((await which(tool)) === null) missing.push(tool);
const skip = missing.length > 0 ? `not installed: ${missing.join(', ')}` : false;

t.test(
  'rauc status and mark-good call the backend; the trial is committed',
  { skip },
  async (tt) => {
    const dir = await tempDir('vigil-rauc-service-');
    tt.teardown(() => rm(dir, { recursive: true, force: true }));
    const root = join(dir, 'root');
    await mkdir(join(root, 'boot', 'firmware'), { recursive: true });
    await mkdir(join(root, 'proc'), { recursive: true });
    // the trial boot of B: committed A, trial B recorded by set-primary at install time
    await writeFile(join(root, 'boot', 'firmware', 'autoboot.txt'), autobootTxt('a'));
    await writeFile(
      join(root, 'boot', 'firmware', STATE_FILE),
      '{"format":"vigil-ab/1","trial":"b","bad":[]}\n',
    );
    await writeFile(
      join(root, 'proc', 'cmdline'),
      'rauc.slot=B vigil.boot_partition=2 vigil.tryboot=1\n',
    );
    for (const s of ['a', 'b']) await writeFile(join(dir, `slot-${s}.img`), '');
    const backend = join(dir, 'backend.sh');
    await writeFile(
      backend,
      [
        '#!/bin/sh',
        `echo "$*" >> ${join(dir, 'calls.log')}`,
        // the image's backend process (bin/rauc-backend.ts), as RAUC_PATHS.backend runs it
        `VIGIL_ROOT=${root} exec ${join(repo, 'node_modules', '.bin', 'tsx')} ${join(repo, 'bin', 'rauc-backend.ts')} "$@"`,
        '',
      ].join('\n'),
    );
    await chmod(backend, 0o755);
    const conf = join(dir, 'system.conf');
    await writeFile(
      conf,
      [
        '[system]',
        'compatible=vigil-test',
        'bootloader=custom',
        `data-directory=${join(dir, 'data')}`,
        '[handlers]',
        `bootloader-custom-backend=${backend}`,
        '[slot.rootfs.0]',
        `device=${join(dir, 'slot-a.img')}`,
        'type=ext4',
        'bootname=A',
        '[slot.rootfs.1]',
        `device=${join(dir, 'slot-b.img')}`,
        'type=ext4',
        'bootname=B',
        '',
      ].join('\n'),
    );
    // One private bus for the service and the clients; wait for the service's name (no sleep).
    const script = join(dir, 'run.sh');
    await writeFile(
      script,
      [
        '#!/bin/sh',
        'set -e',
        'export DBUS_SYSTEM_BUS_ADDRESS="$DBUS_SESSION_BUS_ADDRESS"',
        `rauc service --conf=${conf} --override-boot-slot=B > ${join(dir, 'service.log')} 2>&1 &`,
        'svc=$!',
        'gdbus wait --system --timeout 120 de.pengutronix.rauc',
        `rauc status --detailed --output-format=json > ${join(dir, 'status.json')}`,
        'rauc status mark-good booted',
        'kill $svc',
        '',
      ].join('\n'),
    );
    await chmod(script, 0o755);
    const r = await run('dbus-run-session', ['--', script], { timeoutMs: 600_000 });
    tt.match(r.stdout.toString(), /marked slot rootfs\.1 as good/);

    const status = parseRaucStatus(await readFile(join(dir, 'status.json'), 'utf8'));
    tt.equal(status.booted, 'B');
    tt.equal(status.primary, 'rootfs.1', "RAUC's primary is the backend's pending trial");
    tt.same(status.slots.map((s) => [s.name, s.bootname, s.state]).sort(), [
      ['rootfs.0', 'A', 'inactive'],
      ['rootfs.1', 'B', 'booted'],
    ]);
    const calls = (await readFile(join(dir, 'calls.log'), 'utf8')).trim().split('\n');
    tt.ok(calls.includes('get-primary'), calls.join(', '));
    tt.equal(calls.at(-1), 'set-state B good', 'mark-good became set-state on the backend');
    tt.equal(
      await readFile(join(root, 'boot', 'firmware', 'autoboot.txt'), 'utf8'),
      autobootTxt('b'),
      'committed: B in [all]',
    );
  },
);
