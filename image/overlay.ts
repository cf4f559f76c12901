/**
 * Files the build puts into the image, generated as data from the board and
 * the layout (so the tests can check them without building an image).
 */
import {
  autobootTxt as cardAutobootTxt,
  cardPartUuid,
  FIRMWARE_MOUNT,
} from '../protocol/card-layout.js';
import {
  OS_VERSION_FILE,
  RAUC_PATHS,
  raucSystemConf,
  SLOT_BOOTNAMES,
} from '../protocol/rauc-system.js';
import type { Board } from './boards.js';
import { LABELS, partUuid } from './layout.js';
import type { Layout } from './layout.js';

export interface OverlayFile {
  /** Absolute path inside the root filesystem, or the boot partition for bootFiles(). */
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

/** Where things live in the image. */
export const IMAGE_PATHS = {
  app: '/opt/vigil',
  node: '/opt/vigil/node/bin/node',
  cli: '/usr/bin/vigil',
  units: '/usr/lib/systemd/system',
  provisioning: '/boot/vigil-provisioning',
  firmware: FIRMWARE_MOUNT,
  growDone: '/var/lib/vigil/.data-partition-grown',
} as const;

export const HUB_UNIT = 'vigil-hub.service';
export const GROW_UNIT = 'vigil-grow-data.service';
export const TWIN_REPORT_UNIT = 'vigil-twin-report.service';
export const TWIN_SETUP_UNIT = 'vigil-twin-setup.service';
export const TWIN_JOURNEY_UNIT = 'vigil-twin-journey.service';
/** Twin only: the system test's journey disk (a tar archive on a raw virtio disk, by serial). */
export const TWIN_JOURNEY_DISK = '/dev/disk/by-id/virtio-vigil-journey';
export const TWIN_JOURNEY_DIR = '/run/vigil-journey';

/** The Pi firmware's config.txt for one boot slot. */
export function configTxt(kernelVersion: string): string {
  return [
    '# Vigil - written by `vigil image build`. Raspberry Pi 3, 4 and Zero 2 W, 64-bit.',
    'arm_64bit=1',
    '# Debian kernel with the upstream device trees (bcm2837-rpi-3-b.dtb, bcm2711-rpi-4-b.dtb, ...)',
    'upstream_kernel=1',
    `kernel=vmlinuz-${kernelVersion}`,
    `initramfs initrd.img-${kernelVersion} followkernel`,
    'enable_uart=1',
    'disable_overscan=1',
    "# Camera: the legacy bcm2835-v4l2 driver in Debian's kernel delivers H.264 encoded by the",
    '# VideoCore straight from the capture device; it needs the start_x firmware and GPU memory.',
    'start_x=1',
    'gpu_mem=128',
    '# the SoC watchdog: systemd pets it (RuntimeWatchdogSec); a hung trial boot resets into the committed slot',
    'dtparam=watchdog=on',
    '',
  ].join('\n');
}

/**
 * Seconds after a kernel panic before the board resets itself (`panic=`). The hardware
 * watchdog is armed only once systemd runs (WATCHDOG_CONF); before that, in the kernel and
 * the initramfs, a panic — and initramfs-tools' "root device not found", which with `panic=`
 * reboots instead of opening a rescue shell — would otherwise stop a trial boot for good.
 * The reset clears the firmware's one-shot tryboot flag: the committed slot boots.
 */
export const KERNEL_PANIC_REBOOT_SEC = 10;

/**
 * Kernel command line of a slot: root by PARTUUID, so slot B only differs in one digit;
 * `rauc.slot=` tells RAUC which slot booted (protocol/rauc-system.ts boot names).
 */
export function cmdlineTxt(board: Board, layout: Layout, slot: 'a' | 'b'): string {
  const root = partUuid(layout, slot === 'a' ? 'root-a' : 'root-b');
  return `${board.console} root=PARTUUID=${root} rootfstype=ext4 rw rootwait fsck.repair=yes panic=${String(KERNEL_PANIC_REBOOT_SEC)} rauc.slot=${SLOT_BOOTNAMES[slot]}\n`;
}

/**
 * autoboot.txt for the Pi 4 bootloader's A/B switch (`tryboot`) as the image ships it:
 * slot A committed (boot partition 1), a `reboot '0 tryboot'` boots slot B (partition 2)
 * once. The text and the numbers are protocol/card-layout.ts's, which the OTA backend
 * (ota/rauc-backend.ts) rewrites on commit. The Pi 3 and Zero 2 W ignore this file and always
 * boot partition 1 (docs/image.md).
 */
export function autobootTxt(): string {
  return cardAutobootTxt('a');
}

/**
 * RAUC's custom bootloader backend as RAUC runs it: the project's implementation of the
 * Pi firmware's autoboot.txt + tryboot rule (ota/rauc-backend.ts), through its own small
 * entry point (bin/rauc-backend.ts) rather than the whole CLI: RAUC starts it several
 * times per install and per commit.
 */
export function raucBackendWrapper(): string {
  return [
    '#!/bin/sh',
    '# RAUC custom bootloader backend (installed by `vigil image build`): ota/rauc-backend.ts.',
    `exec ${IMAGE_PATHS.node} ${IMAGE_PATHS.app}/dist/bin/rauc-backend.js "$@"`,
    '',
  ].join('\n');
}

/**
 * systemd (PID 1) opens the hardware watchdog (/dev/watchdog0: bcm2835-wdt on a Pi, i6300esb
 * on the twin) and pets it at half this period; a hang of the kernel or of PID 1 stops the
 * petting and the watchdog resets the board. A one-shot tryboot flag is gone by then, so the
 * firmware boots the committed slot.
 */
export const WATCHDOG_CONF = '[Manager]\nRuntimeWatchdogSec=15s\nRebootWatchdogSec=2min\n';
/**
 * The twin's (qemu-amd64) hardware watchdog period. qemu's i6300esb counts host time while the
 * emulated CPU (TCG) on a loaded 2-core CI machine runs tens of times slower than a Pi's: in
 * early boot (generators, unit loading, udev coldplug) PID 1 went more than 15 s without
 * reaching its main loop, and the watchdog reset a healthy trial boot before its first unit
 * ran (CI, ota-os-ab-twin boot 4). A hung twin is still reset, two minutes later; the Pi keeps
 * 15 s (bcm2835-wdt's limit is ~16 s).
 */
export const TWIN_WATCHDOG_CONF = '[Manager]\nRuntimeWatchdogSec=2min\nRebootWatchdogSec=2min\n';
export const WATCHDOG_CONF_PATH = '/etc/systemd/system.conf.d/vigil-watchdog.conf';

export const OS_CONFIRM_UNIT = 'vigil-os-confirm.service';
export const OS_CONFIRM_TIMER = 'vigil-os-confirm.timer';
/** How long after boot the hub has to confirm a new OS before the deadline unit gives up. */
export const OS_TRIAL_DEADLINE_SEC = 900;

/**
 * The OS trial's deadline. The hub confirms an OS trial itself (bin/hub-os.ts: its health
 * check, then mark-good); a trial boot whose hub never gets that far (storage or services
 * never come up, the hub restarted by its watchdog) is still pending when this runs:
 * mark-bad and a plain reboot into the committed slot. Nothing to do without a trial record.
 */
export function osConfirmUnit(): string {
  return unit([
    '[Unit]',
    'Description=Vigil OS update: trial deadline (no confirmation from the hub: back to the committed slot)',
    `After=${HUB_UNIT}`,
    // nothing to do unless an OS update was installed (the record sits on the boot FAT)
    `ConditionPathExists=${IMAGE_PATHS.firmware}/vigil-os.json`,
    '',
    '[Service]',
    'Type=oneshot',
    `ExecStart=${IMAGE_PATHS.cli} ota os-confirm --deadline`,
    'TimeoutStartSec=5min',
  ]);
}

export function osConfirmTimer(): string {
  return unit([
    '[Unit]',
    'Description=Vigil OS update: trial deadline',
    '',
    '[Timer]',
    `OnBootSec=${String(OS_TRIAL_DEADLINE_SEC)}s`,
    'AccuracySec=5s',
    '',
    '[Install]',
    'WantedBy=timers.target',
  ]);
}

/** Default OS version of an image built without `--os-version`. */
export const DEFAULT_OS_VERSION = '0.0.0';

/**
 * OS updates: RAUC's system.conf (slots from the card table), the backend, the watchdog,
 * and the OS version the hub's agent compares `rootfs` targets with (`vigil hub status`).
 */
export function osUpdateFiles(board: Board, osVersion = DEFAULT_OS_VERSION): OverlayFile[] {
  return [
    { path: OS_VERSION_FILE, content: `${osVersion}\n`, mode: 0o644 },
    { path: `${IMAGE_PATHS.units}/${OS_CONFIRM_UNIT}`, content: osConfirmUnit(), mode: 0o644 },
    { path: `${IMAGE_PATHS.units}/${OS_CONFIRM_TIMER}`, content: osConfirmTimer(), mode: 0o644 },
    { path: RAUC_PATHS.systemConf, content: raucSystemConf(board.name), mode: 0o644 },
    { path: RAUC_PATHS.backend, content: raucBackendWrapper(), mode: 0o755 },
    {
      path: WATCHDOG_CONF_PATH,
      content: board.name === 'qemu-amd64' ? TWIN_WATCHDOG_CONF : WATCHDOG_CONF,
      mode: 0o644,
    },
  ];
}

function unit(lines: readonly string[]): string {
  return lines.join('\n') + '\n';
}

/** systemd's device unit for /dev/disk/by-partuuid/5649474c-07 ("-" escaped as \x2d). */
export const DATA_DEVICE_UNIT = `dev-disk-by\\x2dpartuuid-${cardPartUuid('data').replace(/-/g, '\\x2d')}.device`;

export function growUnit(): string {
  return unit([
    '[Unit]',
    'Description=Vigil: grow the data partition to the end of the card (first boot)',
    'Documentation=file:/opt/vigil/docs/image.md',
    `ConditionPathExists=!${IMAGE_PATHS.growDone}`,
    'DefaultDependencies=no',
    // the data partition has no filesystem, so nothing else waits for its device node
    `Wants=${DATA_DEVICE_UNIT}`,
    `After=local-fs.target ${DATA_DEVICE_UNIT}`,
    'Before=vigil-hub.service',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `ExecStart=${IMAGE_PATHS.cli} image grow-data`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ]);
}

/**
 * Twin only: when the kernel command line carries `vigil.report=1` (the system
 * test adds it), print the hub's state and the hotspot's state on the console
 * in `VIGIL-TWIN key=value` lines, then power off. Without it, nothing runs.
 */
export function twinReportUnit(): string {
  return unit([
    '[Unit]',
    'Description=Vigil twin: report hub state on the console for the system test',
    'ConditionKernelCommandLine=vigil.report=1',
    // not After=vigil-hub.service: a hub that never signals READY must still be reported
    'After=vigil-grow-data.service',
    '',
    '[Service]',
    'Type=oneshot',
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    `ExecStart=${IMAGE_PATHS.cli} image twin-report`,
    // with a journey to walk (vigil.journey=1), the journey unit powers off when done
    "ExecStopPost=/bin/sh -c 'grep -qw vigil.journey=1 /proc/cmdline || exec /usr/bin/systemctl --no-block poweroff'",
    'TimeoutStartSec=1800',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ]);
}

/** systemd's device unit for TWIN_JOURNEY_DISK. */
const JOURNEY_DEVICE_UNIT = 'dev-disk-by\\x2did-virtio\\x2dvigil\\x2djourney.device';

/**
 * Twin only, when the kernel command line carries `vigil.journey=1` (the system test's
 * image-twin-boot adds it with its journey disk): before the hub starts, unpack the test's
 * driver files from the journey disk (a tar archive on a raw virtio disk with serial
 * "vigil-journey") and run its `setup.sh` (test hardware the twin has no module for, the
 * board's hub config). The hub itself then starts as shipped. Without the argument, nothing runs.
 */
export function twinSetupUnit(): string {
  return unit([
    '[Unit]',
    'Description=Vigil twin: the system test journey disk (before the hub)',
    'ConditionKernelCommandLine=vigil.journey=1',
    'DefaultDependencies=no',
    `Wants=${JOURNEY_DEVICE_UNIT}`,
    `After=local-fs.target systemd-modules-load.service ${JOURNEY_DEVICE_UNIT}`,
    `Before=${HUB_UNIT}`,
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    `ExecStart=/bin/sh -c 'mkdir -p ${TWIN_JOURNEY_DIR} && tar -xf ${TWIN_JOURNEY_DISK} -C ${TWIN_JOURNEY_DIR} && exec /bin/bash ${TWIN_JOURNEY_DIR}/setup.sh'`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ]);
}

/** Twin only: systemd manager settings for a software-emulated machine. */
export const TWIN_SYSTEM_CONF = '/etc/systemd/system.conf.d/vigil-twin.conf';

/**
 * Twin only: the device wait. The twin runs under qemu's software emulation (TCG) on shared CI
 * machines, where udev's first pass over the devices has taken longer than systemd's default
 * 90 s wait for a device unit (`/dev/disk/by-partuuid/...` timed out, the boot and provisioning
 * mounts failed). A real card boots in seconds; only the twin waits longer.
 */
export function twinSystemConf(): string {
  return unit([
    '# Vigil twin - written by `vigil image build` for the qemu-amd64 board only.',
    '[Manager]',
    'DefaultDeviceTimeoutSec=900s',
  ]);
}

/**
 * Twin only (`vigil.journey=1`): once the report unit has seen the pairing window, walk the
 * journey disk's `journey.sh` (a phone, the home router and the relay in network namespaces
 * of the twin), its lines on the console, then power off.
 */
export function twinJourneyUnit(): string {
  return unit([
    '[Unit]',
    'Description=Vigil twin: walk the system test journey',
    'ConditionKernelCommandLine=vigil.journey=1',
    `Requires=${TWIN_SETUP_UNIT}`,
    `After=${TWIN_SETUP_UNIT} ${TWIN_REPORT_UNIT}`,
    '',
    '[Service]',
    'Type=oneshot',
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    `ExecStart=/bin/bash ${TWIN_JOURNEY_DIR}/journey.sh`,
    'ExecStopPost=/usr/bin/systemctl --no-block poweroff',
    'TimeoutStartSec=3600',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ]);
}

/**
 * Drop-in for the hub unit: the data partition by PARTUUID. The MBR table the Pi
 * needs has no partition labels, so the storage code's label lookup finds nothing;
 * the image names the device explicitly (VIGIL_STORAGE_DEVICE, firmware/storage/real.ts)
 * and makes the hub wait for it and for its first-boot growth.
 */
export function hubDropIn(layout: Layout): string {
  return unit([
    '# Vigil - written by `vigil image build`.',
    '[Unit]',
    `Wants=${DATA_DEVICE_UNIT}`,
    `After=${DATA_DEVICE_UNIT} ${GROW_UNIT}`,
    '',
    '[Service]',
    `Environment=VIGIL_STORAGE_DEVICE=/dev/disk/by-partuuid/${partUuid(layout, 'data')}`,
  ]);
}

/** Twin only: the hub unit's drop-in for a software-emulated machine. */
export const TWIN_HUB_DROPIN = `/etc/systemd/system/${HUB_UNIT}.d/twin.conf`;

/**
 * Twin only: the hub's systemd watchdog. Under qemu's software emulation (TCG) on a loaded
 * 2-core CI machine the twin's CPU runs tens of times slower than a Pi's: starting the
 * services after pairing (module loading, MLS state) kept the hub's event loop from its 15 s
 * WATCHDOG=1 ping for over 30 s, and systemd killed a healthy hub (journey 1, docs/
 * system-tests.md). The Pi keeps the shipped 30 s; a hung twin hub is still killed.
 */
export function twinHubDropIn(): string {
  return unit([
    '# Vigil twin - written by `vigil image build` for the qemu-amd64 board only.',
    '[Service]',
    'WatchdogSec=600s',
  ]);
}

export function fstab(layout: Layout): string {
  return [
    '# Vigil - the root filesystem comes from the kernel command line (root=PARTUUID=..., per slot).',
    `PARTUUID=${partUuid(layout, 'boot-a')} ${IMAGE_PATHS.firmware} vfat defaults,nofail,noatime,umask=0022,x-systemd.device-timeout=90s 0 2`,
    `PARTUUID=${partUuid(layout, 'provisioning')} ${IMAGE_PATHS.provisioning} vfat defaults,nofail,noatime,umask=0077,x-systemd.device-timeout=90s 0 2`,
    '',
  ].join('\n');
}

export function cliWrapper(): string {
  return [
    '#!/bin/sh',
    '# Vigil command line (installed by `vigil image build`).',
    `exec ${IMAGE_PATHS.node} ${IMAGE_PATHS.app}/dist/bin/vigil.js "$@"`,
    '',
  ].join('\n');
}

/** Everything the build writes into the root filesystem (the hub unit is copied separately). */
export function rootOverlay(
  board: Board,
  layout: Layout,
  osVersion = DEFAULT_OS_VERSION,
): OverlayFile[] {
  const files: OverlayFile[] = [
    { path: '/etc/hostname', content: 'vigil\n', mode: 0o644 },
    {
      path: '/etc/hosts',
      content:
        '127.0.0.1\tlocalhost\n127.0.1.1\tvigil\n::1\t\tlocalhost ip6-localhost ip6-loopback\n',
      mode: 0o644,
    },
    // the host's resolv.conf must not leak into the image (and would break reproducibility)
    { path: '/etc/resolv.conf', content: '', mode: 0o644 },
    { path: '/etc/machine-id', content: '', mode: 0o444 },
    { path: '/etc/fstab', content: fstab(layout), mode: 0o644 },
    { path: IMAGE_PATHS.cli, content: cliWrapper(), mode: 0o755 },
    { path: `${IMAGE_PATHS.units}/${GROW_UNIT}`, content: growUnit(), mode: 0o644 },
    {
      path: `/etc/systemd/system/${HUB_UNIT}.d/image.conf`,
      content: hubDropIn(layout),
      mode: 0o644,
    },
    {
      // fewer SD card writes: the journal lives in RAM
      path: '/etc/systemd/journald.conf.d/vigil.conf',
      content: '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n',
      mode: 0o644,
    },
    {
      path: '/etc/vigil/config.json',
      content: JSON.stringify(board.hubConfig, null, 2) + '\n',
      mode: 0o600,
    },
    {
      path: '/etc/vigil/image-release',
      content: `board=${board.name}\narch=${board.arch}\nlayout=ab-v1\n`,
      mode: 0o644,
    },
  ];
  files.push(...osUpdateFiles(board, osVersion));
  if (board.modules.length > 0) {
    files.push({
      path: '/etc/modules-load.d/vigil.conf',
      content: board.modules.join('\n') + '\n',
      mode: 0o644,
    });
  }
  if (board.moduleOptions.length > 0) {
    files.push({
      path: '/etc/modprobe.d/vigil.conf',
      content: board.moduleOptions.join('\n') + '\n',
      mode: 0o644,
    });
  }
  if (board.name === 'qemu-amd64') {
    files.push(
      // not TWIN_SYSTEM_CONF: with a 900 s device wait the plain (non-journey) twin boot
      // waited 15 min for the absent journey disk and ran past the scenario's limit
      { path: TWIN_HUB_DROPIN, content: twinHubDropIn(), mode: 0o644 },
      { path: `${IMAGE_PATHS.units}/${TWIN_REPORT_UNIT}`, content: twinReportUnit(), mode: 0o644 },
      { path: `${IMAGE_PATHS.units}/${TWIN_SETUP_UNIT}`, content: twinSetupUnit(), mode: 0o644 },
      {
        path: `${IMAGE_PATHS.units}/${TWIN_JOURNEY_UNIT}`,
        content: twinJourneyUnit(),
        mode: 0o644,
      },
    );
  }
  return files;
}

export function unitsToEnable(board: Board): string[] {
  const units = [HUB_UNIT, GROW_UNIT, OS_CONFIRM_TIMER];
  if (board.name === 'qemu-amd64') units.push(TWIN_REPORT_UNIT, TWIN_SETUP_UNIT, TWIN_JOURNEY_UNIT);
  return units;
}

/** Generated files of boot slot A (besides kernel, initrd, firmware and DTBs). */
export function bootOverlay(board: Board, layout: Layout, kernelVersion: string): OverlayFile[] {
  const files: OverlayFile[] = [
    { path: '/cmdline.txt', content: cmdlineTxt(board, layout, 'a'), mode: 0o644 },
  ];
  if (board.piFirmware)
    files.push({ path: '/config.txt', content: configTxt(kernelVersion), mode: 0o644 });
  // the twin's harness plays the Pi firmware and reads the same file (docs/ota.md)
  files.push({ path: '/autoboot.txt', content: autobootTxt(), mode: 0o644 });
  return files;
}

export { LABELS };
