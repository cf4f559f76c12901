/**
 * The SD card's partition layout: which MBR partition number holds what. One
 * table for the image builder (which writes the partitions, `autoboot.txt` and
 * each slot's `cmdline.txt`), the OTA's RAUC backend (ota/rauc-backend.ts, which
 * switches boot slots by rewriting `autoboot.txt` and reads the booted partition's
 * number from the device tree) and the tests that check the two agree
 * (test/protocol/card-layout.test.ts). Sizes stay with the image (image/layout.ts).
 *
 *   1  boot A        FAT32, also holds autoboot.txt (the firmware reads it from partition 1)
 *   2  boot B        FAT32
 *   3  provisioning  FAT
 *   4  extended      holds 5-7
 *   5  root A        ext4
 *   6  root B
 *   7  data          LUKS2, made by the hub on first boot
 *
 * The Pi firmware names boot partitions by MBR number; Linux finds roots by
 * PARTUUID (`<disk id>-<number>`), so both are fixed here.
 */
import { VigilError } from '../base/errors.js';

/** MBR disk identifier ("VIGL"): PARTUUIDs are `5649474c-NN`. */
export const CARD_DISK_ID = 0x5649474c;

export const CARD_ROLES = [
  'boot-a',
  'boot-b',
  'provisioning',
  'extended',
  'root-a',
  'root-b',
  'data',
] as const;
export type CardRole = (typeof CARD_ROLES)[number];

/** MBR partition number of each role. */
export const CARD_PARTITIONS: Readonly<Record<CardRole, number>> = {
  'boot-a': 1,
  'boot-b': 2,
  provisioning: 3,
  extended: 4,
  'root-a': 5,
  'root-b': 6,
  data: 7,
};

export type CardSlot = 'a' | 'b';

/** Boot partition of each slot: what autoboot.txt's `boot_partition` names. */
export const BOOT_PARTITIONS: Readonly<Record<CardSlot, number>> = {
  a: CARD_PARTITIONS['boot-a'],
  b: CARD_PARTITIONS['boot-b'],
};

/** Root partition of each slot (its `cmdline.txt` says `root=PARTUUID=...`). */
export const ROOT_PARTITIONS: Readonly<Record<CardSlot, number>> = {
  a: CARD_PARTITIONS['root-a'],
  b: CARD_PARTITIONS['root-b'],
};

/**
 * The partition holding autoboot.txt: the Pi bootloader reads it from the first
 * partition, which is boot A. Mounted at FIRMWARE_MOUNT in the running system.
 */
export const AUTOBOOT_PARTITION = CARD_PARTITIONS['boot-a'];

/** Where the running system mounts boot A (and with it autoboot.txt). */
export const FIRMWARE_MOUNT = '/boot/firmware';

/** Linux PARTUUID of a partition of the card: "5649474c-05". */
export function cardPartUuid(role: CardRole): string {
  const disk = CARD_DISK_ID.toString(16).padStart(8, '0');
  return `${disk}-${CARD_PARTITIONS[role].toString(16).padStart(2, '0')}`;
}

/**
 * autoboot.txt for the Pi 4/5 bootloader's A/B switch: normal boots use the
 * committed slot's boot partition, a `reboot "0 tryboot"` boots the other one once.
 * The image writes it with slot A committed; the OTA backend rewrites it on commit.
 */
export function autobootTxt(committed: CardSlot): string {
  const other: CardSlot = committed === 'a' ? 'b' : 'a';
  return [
    '[all]',
    'tryboot_a_b=1',
    `boot_partition=${String(BOOT_PARTITIONS[committed])}`,
    '[tryboot]',
    `boot_partition=${String(BOOT_PARTITIONS[other])}`,
    '',
  ].join('\n');
}

export class AutobootError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EAUTOBOOT', message, options);
    this.name = 'AutobootError';
  }
}

/** Parse autoboot.txt (as autobootTxt writes it, or edited by hand): [all] and [tryboot]. */
export function parseAutoboot(text: string): {
  normal: number;
  tryboot: number;
  abEnabled: boolean;
} {
  let section = 'all';
  let normal: number | undefined;
  let tryboot: number | undefined;
  let abEnabled = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const sec = /^\[(\w+)\]$/.exec(line);
    if (sec) {
      section = (sec[1] ?? '').toLowerCase();
      continue;
    }
    const kv = /^(\w+)\s*=\s*(\S+)$/.exec(line);
    if (!kv) continue;
    const [, k, v] = kv;
    if (k === 'tryboot_a_b' && section === 'all') abEnabled = v === '1';
    if (k === 'boot_partition') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1)
        throw new AutobootError(`autoboot.txt: bad boot_partition "${String(v)}"`);
      if (section === 'tryboot') tryboot = n;
      else if (section === 'all') normal = n;
    }
  }
  if (normal === undefined || tryboot === undefined)
    throw new AutobootError('autoboot.txt names no [all] and [tryboot] boot_partition');
  return { normal, tryboot, abEnabled };
}
