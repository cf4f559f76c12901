/**
 * RAUC's view of the card: `/etc/rauc/system.conf` generated from the one
 * partition table (protocol/card-layout.ts). The image builder writes it; the
 * custom bootloader backend (ota/rauc-backend.ts) answers RAUC with the same
 * boot names; test/protocol/card-layout.test.ts checks that the devices named
 * here are the partitions the image writes and the backend switches.
 *
 * Two slot pairs, each pair installed together:
 *
 *   rootfs.0 (bootname A)  root A, ext4        boot.0  boot A, FAT (parent rootfs.0)
 *   rootfs.1 (bootname B)  root B, ext4        boot.1  boot B, FAT (parent rootfs.1)
 *
 * A boot slot is written by the bundle's own install hook (files replaced, the
 * FAT never reformatted), because boot A also holds autoboot.txt, which must
 * survive an install into slot A (docs/decisions.md, "one card layout").
 */
import { cardPartUuid } from './card-layout.js';
import type { CardRole, CardSlot } from './card-layout.js';

/** RAUC boot names of the two slots: what `rauc.slot=` and the backend say. */
export const SLOT_BOOTNAMES: Readonly<Record<CardSlot, string>> = { a: 'A', b: 'B' };

/** The slot of a RAUC boot name, or undefined for anything else. */
export function slotOfBootname(name: string): CardSlot | undefined {
  if (name === SLOT_BOOTNAMES.a) return 'a';
  if (name === SLOT_BOOTNAMES.b) return 'b';
  return undefined;
}

/** The root filesystem's OS version (x.y.z), written by `vigil image build --os-version`. */
export const OS_VERSION_FILE = '/etc/vigil/os-version';

/** Where the image puts RAUC's files and the project's backend. */
export const RAUC_PATHS = {
  systemConf: '/etc/rauc/system.conf',
  keyring: '/etc/rauc/keyring.pem',
  backend: '/usr/lib/vigil/rauc-bootloader',
  /** Slot status (installed bundle versions, hashes): on the shared data side, not a slot. */
  dataDirectory: '/var/lib/rauc',
} as const;

/** One RAUC slot as system.conf declares it. */
export interface RaucSlot {
  /** `rootfs.0`, `boot.1`, ... */
  readonly name: string;
  readonly role: CardRole;
  readonly type: 'ext4' | 'vfat';
  readonly device: string;
  readonly bootname?: string;
  readonly parent?: string;
}

/** The slots of the card, from the card table. */
export function raucSlots(): RaucSlot[] {
  const dev = (role: CardRole): string => `/dev/disk/by-partuuid/${cardPartUuid(role)}`;
  const slots: RaucSlot[] = [];
  (['a', 'b'] as const).forEach((slot, i) => {
    const root: CardRole = slot === 'a' ? 'root-a' : 'root-b';
    const boot: CardRole = slot === 'a' ? 'boot-a' : 'boot-b';
    slots.push({
      name: `rootfs.${String(i)}`,
      role: root,
      type: 'ext4',
      device: dev(root),
      bootname: SLOT_BOOTNAMES[slot],
    });
    slots.push({
      name: `boot.${String(i)}`,
      role: boot,
      type: 'vfat',
      device: dev(boot),
      parent: `rootfs.${String(i)}`,
    });
  });
  return slots;
}

/** RAUC's `compatible` for a board: a bundle for another board is refused by RAUC. */
export function raucCompatible(board: string): string {
  return `vigil-${board}`;
}

/** /etc/rauc/system.conf for a board. */
export function raucSystemConf(board: string): string {
  const lines = [
    '# Vigil - written by `vigil image build` from protocol/rauc-system.ts.',
    '[system]',
    `compatible=${raucCompatible(board)}`,
    'bootloader=custom',
    // only signed verity bundles (no plain format: its signature covers less)
    'bundle-formats=-plain',
    `data-directory=${RAUC_PATHS.dataDirectory}`,
    '',
    '[keyring]',
    `path=${RAUC_PATHS.keyring}`,
    '',
    '[handlers]',
    `bootloader-custom-backend=${RAUC_PATHS.backend}`,
    '',
  ];
  for (const s of raucSlots()) {
    lines.push(`[slot.${s.name}]`, `device=${s.device}`, `type=${s.type}`);
    if (s.bootname !== undefined) lines.push(`bootname=${s.bootname}`);
    if (s.parent !== undefined) lines.push(`parent=${s.parent}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Parse the slot sections of a system.conf (what the test reads back). */
export function parseRaucSlots(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let cur: Record<string, string> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sec = /^\[slot\.([\w.]+)\]$/.exec(line);
    if (sec) {
      cur = {};
      out[sec[1] ?? ''] = cur;
      continue;
    }
    if (line.startsWith('[')) {
      cur = undefined;
      continue;
    }
    const kv = /^([\w-]+)=(.*)$/.exec(line);
    if (kv && cur) cur[kv[1] ?? ''] = kv[2] ?? '';
  }
  return out;
}
