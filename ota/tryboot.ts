/**
 * Raspberry Pi A/B boot selection with the bootloader's `tryboot` flag
 * (Pi 4 / 400 / CM4 / Pi 5 EEPROM bootloaders).
 *
 * Layout (protocol/card-layout.ts, the same table the image is built from):
 * partitions 1 and 2 are the A and B boot partitions (each with its own
 * config.txt, kernel, initramfs and a cmdline.txt naming its root); partition 1
 * also holds autoboot.txt, the file the bootloader reads first:
 *
 *   [all]
 *   tryboot_a_b=1
 *   boot_partition=1        <- the committed slot
 *   [tryboot]
 *   boot_partition=2        <- the slot on trial
 *
 * `reboot "0 tryboot"` sets a one-shot flag: the bootloader clears it before it
 * starts the firmware, so the NEXT reset — a crash, a watchdog bite, a power
 * cut — boots the committed partition again. The hardware watchdog
 * (dtparam=watchdog=on + systemd RuntimeWatchdogSec) turns a hung trial into
 * such a reset; the trial guard timer turns a trial that never commits into a
 * plain reboot. Committing rewrites autoboot.txt so the trial partition
 * becomes `boot_partition` in [all].
 *
 * Pi 3 / Zero 2 W bootloaders have no tryboot: see docs/ota.md (app-level
 * slots there).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import { run } from '../hw/os/run.js';
import { autobootTxt, BOOT_PARTITIONS, FIRMWARE_MOUNT } from '../protocol/card-layout.js';
import type { SlotName } from './slots.js';

export { autobootTxt };

/** Where autoboot.txt is read and written: boot A's mount point. */
export const SELECTOR_DIR = FIRMWARE_MOUNT;

export class TrybootError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTATRYBOOT', message, options);
    this.name = 'TrybootError';
  }
}

/** Parse autoboot.txt: the [all] and [tryboot] boot partitions. */
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
        throw new TrybootError(`autoboot.txt: bad boot_partition "${String(v)}"`);
      if (section === 'tryboot') tryboot = n;
      else if (section === 'all') normal = n;
    }
  }
  if (normal === undefined || tryboot === undefined)
    throw new TrybootError('autoboot.txt names no [all] and [tryboot] boot_partition');
  return { normal, tryboot, abEnabled };
}

/** Asks the firmware for a one-shot tryboot on the next reboot. */
export interface RebootPort {
  reboot(arg?: string): Promise<void>;
}

/** systemd's reboot with an argument passed to the kernel's reboot syscall ("0 tryboot"). */
export class SystemdReboot implements RebootPort {
  async reboot(arg?: string): Promise<void> {
    await run('systemctl', arg === undefined ? ['reboot'] : ['reboot', arg], { timeoutMs: 30_000 });
  }
}

function u32be(b: Buffer | undefined): number | undefined {
  return b !== undefined && b.length >= 4 ? b.readUInt32BE(0) : undefined;
}

export interface TrybootSelectorOptions {
  /** Mount point of the partition holding autoboot.txt (SELECTOR_DIR, through HostPaths). */
  readonly selectorDir: string;
  /** /proc/device-tree/chosen/bootloader (through HostPaths). */
  readonly bootloaderDt: string;
  readonly fs: DurableFs;
  readonly reboot: RebootPort;
}

export class TrybootSelector {
  readonly #o: TrybootSelectorOptions;

  constructor(o: TrybootSelectorOptions) {
    this.#o = o;
  }

  #slotOf(partition: number): SlotName {
    if (partition === BOOT_PARTITIONS.a) return 'a';
    if (partition === BOOT_PARTITIONS.b) return 'b';
    throw new TrybootError(`partition ${String(partition)} is neither slot A nor B`);
  }

  /** Write the first autoboot.txt (image build / first boot). */
  async install(committed: SlotName): Promise<void> {
    await this.#o.fs.writeFileAtomic(
      join(this.#o.selectorDir, 'autoboot.txt'),
      autobootTxt(committed),
      'autoboot',
    );
  }

  /** Which slot is committed, which one runs now, and whether this boot is a trial. */
  async status(): Promise<{ committed: SlotName; running: SlotName | undefined; trial: boolean }> {
    const text = await readFile(join(this.#o.selectorDir, 'autoboot.txt'), 'utf8');
    const cfg = parseAutoboot(text);
    const dt = async (name: string): Promise<number | undefined> =>
      u32be(await this.#o.fs.readIfExists(join(this.#o.bootloaderDt, name)));
    const part = await dt('partition');
    const tryFlag = await dt('tryboot');
    return {
      committed: this.#slotOf(cfg.normal),
      running: part === undefined ? undefined : this.#slotOf(part),
      trial: tryFlag === 1,
    };
  }

  /** Reboot once into the other slot (the firmware forgets it after one boot). */
  async tryOther(): Promise<void> {
    const text = await readFile(join(this.#o.selectorDir, 'autoboot.txt'), 'utf8');
    if (!parseAutoboot(text).abEnabled)
      throw new TrybootError('autoboot.txt does not enable tryboot_a_b');
    await this.#o.reboot.reboot('0 tryboot');
  }

  /** On a healthy trial boot: make the running slot the committed one. */
  async commitRunning(): Promise<SlotName> {
    const s = await this.status();
    if (!s.trial || s.running === undefined)
      throw new TrybootError('not running a tryboot trial: nothing to commit');
    await this.install(s.running);
    return s.running;
  }
}

/**
 * Files the image installs so that a hung or never-committed trial boot
 * returns to the committed slot: the hardware watchdog (kernel or systemd
 * hang → reset) and a guard timer (userspace alive but no commit → reboot).
 */
export function trialGuardFiles(trialSeconds = 600): Readonly<Record<string, string>> {
  return {
    '/etc/systemd/system.conf.d/vigil-watchdog.conf':
      '[Manager]\nRuntimeWatchdogSec=15s\nRebootWatchdogSec=2min\n',
    '/etc/systemd/system/vigil-ota-trial-guard.service': [
      '[Unit]',
      'Description=Vigil OTA: reboot to the committed slot when a trial boot does not commit',
      'ConditionPathExists=/proc/device-tree/chosen/bootloader/tryboot',
      '',
      '[Service]',
      'Type=oneshot',
      'ExecStart=/usr/bin/vigil ota trial-guard',
      '',
    ].join('\n'),
    '/etc/systemd/system/vigil-ota-trial-guard.timer': [
      '[Unit]',
      'Description=Vigil OTA trial deadline',
      '',
      '[Timer]',
      `OnBootSec=${String(trialSeconds)}s`,
      'AccuracySec=5s',
      '',
      '[Install]',
      'WantedBy=timers.target',
      '',
    ].join('\n'),
  };
}

/** config.txt lines for each boot partition: the hardware watchdog on. */
export const CONFIG_TXT_WATCHDOG = 'dtparam=watchdog=on\n';
