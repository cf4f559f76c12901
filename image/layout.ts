/**
 * The partition layout, planned for A/B updates, as pure data.
 *
 *   p1  boot A        FAT32  Pi firmware, config.txt, autoboot.txt, kernel, initrd, DTBs
 *   p2  boot B        FAT32  the other slot's boot files (empty in a fresh image)
 *   p3  provisioning  FAT    one device's bundle (`vigil image provision`), /boot/vigil-provisioning
 *   p4  extended
 *   p5  root A        ext4   the Debian root filesystem with Vigil
 *   p6  root B        (blank: OTA writes it)
 *   p7  data          (blank: LUKS2 made on first boot by the storage code; grown to the
 *                      end of the card on first boot)
 *
 * MBR ("dos") rather than GPT: the Pi 3 and Zero 2 W boot ROM only reads MBR, and the
 * Pi bootloader's autoboot.txt/tryboot refers to partitions by MBR number. The boot
 * partitions are primary (the firmware reads them); everything Linux-only is logical.
 * The disk identifier is fixed, so PARTUUIDs are stable across builds (reproducible)
 * and across OTA (root=PARTUUID=5649474c-05 / -06).
 *
 * The partition numbers and the disk identifier come from protocol/card-layout.ts,
 * which the OTA tryboot backend reads as well; this file adds sizes and file systems.
 */
import { VigilError } from '../base/errors.js';
import { CARD_DISK_ID, CARD_PARTITIONS } from '../protocol/card-layout.js';
import type { CardRole } from '../protocol/card-layout.js';

export const DISK_ID = CARD_DISK_ID;
export const SECTOR = 512;
export const MIB_SECTORS = (1024 * 1024) / SECTOR;
/** First partition starts at 4 MiB (erase-block aligned on SD cards). */
export const FIRST_START_MIB = 4;

export type PartitionRole = CardRole;

export interface PlannedPartition {
  readonly number: number;
  readonly role: PartitionRole;
  readonly startMiB: number;
  readonly sizeMiB: number;
  /** MBR type byte as sfdisk writes it. */
  readonly type: 'c' | '5' | '83';
  readonly bootable: boolean;
  /** Filesystem label (FAT or ext4), when the image formats it. */
  readonly label: string | undefined;
}

export interface Layout {
  readonly diskId: number;
  readonly totalMiB: number;
  readonly partitions: readonly PlannedPartition[];
}

export interface LayoutSizes {
  readonly bootMiB: number;
  readonly rootMiB: number;
  readonly provisioningMiB: number;
  readonly dataMiB: number;
}

export const LABELS = {
  bootA: 'VIGILBOOTA',
  bootB: 'VIGILBOOTB',
  provisioning: 'VIGILPROV',
  rootA: 'vigil-root-a',
} as const;

export class LayoutError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ELAYOUT', message, options);
    this.name = 'LayoutError';
  }
}

export function planLayout(sizes: LayoutSizes): Layout {
  for (const [k, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 1)
      throw new LayoutError(`${k} must be a positive whole number of MiB`);
  }
  if (sizes.bootMiB < 32) throw new LayoutError('bootMiB must be at least 32 (FAT32 minimum)');
  const parts: PlannedPartition[] = [];
  let at = FIRST_START_MIB;
  const add = (
    role: PartitionRole,
    sizeMiB: number,
    type: PlannedPartition['type'],
    label: string | undefined,
    bootable = false,
  ): void => {
    parts.push({
      number: CARD_PARTITIONS[role],
      role,
      startMiB: at,
      sizeMiB,
      type,
      bootable,
      label,
    });
    at += sizeMiB;
  };
  // primary partitions in the order of their numbers (the firmware reads 1 and 2)
  add('boot-a', sizes.bootMiB, 'c', LABELS.bootA, true);
  add('boot-b', sizes.bootMiB, 'c', LABELS.bootB);
  add('provisioning', sizes.provisioningMiB, 'c', LABELS.provisioning);
  const extStart = at;
  // every logical partition is preceded by 1 MiB holding its EBR (keeps alignment)
  at += 1;
  const logical: [PartitionRole, number, string | undefined][] = [
    ['root-a', sizes.rootMiB, LABELS.rootA],
    ['root-b', sizes.rootMiB, undefined],
    ['data', sizes.dataMiB, undefined],
  ];
  const logicalParts: PlannedPartition[] = [];
  for (const [i, [role, size, label]] of logical.entries()) {
    if (i > 0) at += 1;
    logicalParts.push({
      number: CARD_PARTITIONS[role],
      role,
      startMiB: at,
      sizeMiB: size,
      type: '83',
      bootable: false,
      label,
    });
    at += size;
  }
  parts.push({
    number: CARD_PARTITIONS.extended,
    role: 'extended',
    startMiB: extStart,
    sizeMiB: at - extStart,
    type: '5',
    bootable: false,
    label: undefined,
  });
  parts.push(...logicalParts);
  return { diskId: DISK_ID, totalMiB: at, partitions: parts };
}

export function partitionOf(layout: Layout, role: PartitionRole): PlannedPartition {
  const p = layout.partitions.find((x) => x.role === role);
  if (!p) throw new LayoutError(`layout has no ${role} partition`);
  return p;
}

export function diskIdHex(layout: Layout): string {
  return layout.diskId.toString(16).padStart(8, '0');
}

/** Linux PARTUUID of an MBR partition: "<disk id>-<number, 2 hex digits>". */
export function partUuid(layout: Layout, role: PartitionRole): string {
  return `${diskIdHex(layout)}-${partitionOf(layout, role).number.toString(16).padStart(2, '0')}`;
}

/** The sfdisk script that writes the layout (explicit sectors: no guessing). */
export function sfdiskScript(layout: Layout): string {
  const lines = ['label: dos', `label-id: 0x${diskIdHex(layout)}`, 'unit: sectors', ''];
  for (const p of [...layout.partitions].sort((a, b) => a.number - b.number)) {
    const fields = [
      `start=${p.startMiB * MIB_SECTORS}`,
      `size=${p.sizeMiB * MIB_SECTORS}`,
      `type=${p.type}`,
    ];
    if (p.bootable) fields.push('bootable');
    lines.push(fields.join(', '));
  }
  return lines.join('\n') + '\n';
}

/** What `sfdisk -J` reports, validated where it is read (table.ts). */
export interface ReadPartition {
  readonly node: string;
  readonly number: number;
  readonly start: number;
  readonly size: number;
  readonly type: string;
  readonly bootable: boolean;
}

/** Compare a table read back from an image with the plan; returns the differences (empty = match). */
export function compareWithPlan(layout: Layout, table: readonly ReadPartition[]): string[] {
  const problems: string[] = [];
  for (const p of layout.partitions) {
    const r = table.find((x) => x.number === p.number);
    if (!r) {
      problems.push(`partition ${p.number} (${p.role}) is missing`);
      continue;
    }
    if (r.start !== p.startMiB * MIB_SECTORS)
      problems.push(
        `partition ${p.number} (${p.role}) starts at sector ${r.start}, planned ${p.startMiB * MIB_SECTORS}`,
      );
    // the extended partition's size is what its EBR chain needs; sfdisk may report it as planned
    if (p.role !== 'extended' && r.size !== p.sizeMiB * MIB_SECTORS)
      problems.push(
        `partition ${p.number} (${p.role}) has ${r.size} sectors, planned ${p.sizeMiB * MIB_SECTORS}`,
      );
    if (r.type !== p.type)
      problems.push(`partition ${p.number} (${p.role}) has type ${r.type}, planned ${p.type}`);
    if (r.bootable !== p.bootable)
      problems.push(`partition ${p.number} (${p.role}) bootable flag differs`);
  }
  const extra = table.filter((r) => !layout.partitions.some((p) => p.number === r.number));
  for (const r of extra) problems.push(`unplanned partition ${r.number}`);
  return problems;
}
