// Guest side of ota-os-ab.host.ts (run by _ota-os-ab.sh): one boot of the hub's OS agent
// (bin/hub-os.ts) with the real `rauc` CLI and service, the project's backend with the twin
// firmware, the TUF repository on loopback: settle a trial (confirm), then one update check.
// A reboot is a power-off the host sees; it then plays the Pi firmware (autoboot.txt +
// tryboot.flag) for the next boot.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryLogger } from '../../../base/logger.js';
import { HubOsUpdates } from '../../../bin/hub-os.js';
import { parseConfig } from '../../../firmware/config/config.js';
import { DurableFs } from '../../../hw/os/fs.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { run } from '../../../hw/os/run.js';
import { RaucBootBackend, TwinFirmware } from '../../../ota/rauc-backend.js';
import { startStaticServer } from '../../../ota/static-server.js';
import { FetchTransport } from '../../../ota/transport.js';
import { FIRMWARE_MOUNT } from '../../../protocol/card-layout.js';
import { OS_VERSION_FILE } from '../../../protocol/rauc-system.js';

const REPO = '/tmp/in/repo';

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** The power goes off after the FAT is clean: what a reboot leaves on the card. */
async function powerOff(tryboot: boolean): Promise<never> {
  await run('sync', [], { timeoutMs: 60_000 });
  await run('umount', [FIRMWARE_MOUNT], { timeoutMs: 60_000 });
  say(`VT-OS-REBOOT tryboot=${tryboot ? '1' : '0'}`);
  await run('busybox', ['poweroff', '-f'], { timeoutMs: 60_000 });
  return new Promise<never>(() => undefined);
}

async function device(): Promise<void> {
  const behaviour = process.env.VT_OS_BEHAVIOUR ?? 'healthy';
  const fs = new DurableFs();
  const paths = new HostPaths('/');
  let tryboot = false;
  const backend = new RaucBootBackend({
    selectorDir: FIRMWARE_MOUNT,
    fs,
    firmware: new TwinFirmware('/proc/cmdline', FIRMWARE_MOUNT, fs, () => powerOff(tryboot)),
  });
  const booted = await backend.booted();
  const version = (await readFile(OS_VERSION_FILE, 'utf8')).trim();
  say(
    `VT-OS-BOOT slot=${booted?.slot ?? '?'} trial=${booted?.trial === true ? '1' : '0'} version=${version}`,
  );
  const server = await startStaticServer(REPO);
  const os = new HubOsUpdates({
    config: parseConfig({ mode: 'development' }),
    paths,
    logger: new MemoryLogger(),
    fs,
    transport: new FetchTransport(),
    repoUrl: server.url,
    channel: 'stable',
    trustedRoot: () => readFile(join(REPO, 'metadata', '1.root.json')),
    health: {
      check: () =>
        Promise.resolve(
          behaviour === 'healthy'
            ? { ok: true, checks: { camera: { ok: true } } }
            : { ok: false, checks: { camera: { ok: false, detail: 'no frames (test OS)' } } },
        ),
    },
    busy: { isBusy: () => false },
    reporter: {
      report: (o) => {
        say(`VT-OS-OUTCOME ${JSON.stringify(o)}`);
      },
    },
    boot: {
      isTrialBoot: async () => (await backend.booted())?.trial === true,
      rebootIntoTrial: async () => {
        tryboot = (await backend.pendingTrial()) !== undefined;
        await backend.rebootIntoPrimary();
      },
      reboot: async () => {
        tryboot = false;
        await backend.rebootIntoPrimary();
      },
    },
    // the real `rauc` through the typed adapter: not injected (HubOsUpdates' default)
  });
  if (!(await os.setup())) throw new Error(`OS updates off: ${os.status().note ?? '?'}`);
  await os.confirm();
  say('VT-OS-CONFIRMED');
  const o = await os.check();
  say(`VT-OS-CHECK ${JSON.stringify(o)}`);
  await server.close();
}

const mode = process.argv[2];
if (mode === 'device') await device();
else throw new Error(`usage: _ota-os-ab.js device (got ${String(mode)})`);
