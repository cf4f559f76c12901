/**
 * RAUC's `custom` bootloader backend for the Raspberry Pi firmware's A/B rule
 * (Pi 4/400/CM4/5): `autoboot.txt` names the committed boot partition in [all]
 * and the other one in [tryboot]; `reboot "0 tryboot"` sets a one-shot flag
 * the bootloader clears before it starts the firmware, so any later reset
 * boots the committed slot again.
 *
 * RAUC calls the executable the image ships (RAUC_PATHS.backend, a wrapper for
 * `vigil ota rauc-backend`) with:
 *
 *   get-primary               the slot the next boot should use (stdout: A or B)
 *   set-primary <A|B>         after an install: that slot is the next to try
 *   get-state <A|B>           good | bad
 *   set-state <A|B> <good|bad>  mark-good / mark-bad; install marks its target bad first
 *   get-current               the booted slot (RAUC 1.10+ asks; 1.8 reads rauc.slot=)
 *
 * Mapping onto the firmware's rule:
 *
 *   - "primary" = a pending trial when there is one, else the committed slot;
 *   - set-primary of the other slot records a pending trial; the agent then
 *     reboots with the tryboot flag (`rebootIntoPrimary`);
 *   - set-state good of the slot booted through tryboot is the commit: it
 *     rewrites autoboot.txt (the commit point), then clears the trial;
 *   - set-state bad of the trial slot drops the trial: the next plain reboot
 *     (or watchdog reset) boots the committed slot, as the firmware does anyway.
 *
 * The backend's own state (pending trial, bad slots) sits beside autoboot.txt
 * on the boot FAT (STATE_FILE), written atomically. Partition numbers come
 * from protocol/card-layout.ts.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { HostPaths } from '../hw/os/host-paths.js';
import { run } from '../hw/os/run.js';
import {
  autobootTxt,
  BOOT_PARTITIONS,
  FIRMWARE_MOUNT,
  parseAutoboot,
} from '../protocol/card-layout.js';
import type { CardSlot } from '../protocol/card-layout.js';
import { SLOT_BOOTNAMES, slotOfBootname } from '../protocol/rauc-system.js';

export class RaucBackendError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTARAUCBACKEND', message, options);
    this.name = 'RaucBackendError';
  }
}

/** The backend's state file on the boot FAT, beside autoboot.txt. */
export const STATE_FILE = 'vigil-ab.json';

/**
 * The OS agent's trial record (ota/os-agent.ts: pending trial, bad versions) on the same FAT:
 * both root slots see it. Listed here so the bundle hook keeps it (ota/rauc-bundle.ts).
 */
export const OS_TRIAL_FILE = 'vigil-os.json';

/** The twin's stand-in for the firmware's one-shot flag (the qemu harness reads and clears it). */
export const TRYBOOT_FLAG_FILE = 'tryboot.flag';

interface BackendState {
  readonly format: 'vigil-ab/1';
  /** The slot set-primary recorded for its one tryboot trial. */
  readonly trial?: CardSlot;
  readonly bad: readonly CardSlot[];
}

function isCardSlot(v: unknown): v is CardSlot {
  return v === 'a' || v === 'b';
}

/**
 * The state file's decoder, written out instead of a zod schema (the house rule): RAUC
 * starts the backend's process up to seven times for one status query and mark-good, and
 * importing zod costs more than node's own start (~0.4 s of ~0.7 s on the build host, seconds
 * under TCG and on a Pi Zero 2 W; docs/decisions.md). Unknown keys are ignored, `bad` defaults
 * to none; anything else that is not this shape decodes to undefined.
 */
export function decodeBackendState(text: string): BackendState | undefined {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) return undefined;
  const o = j as Record<string, unknown>;
  if (o.format !== 'vigil-ab/1') return undefined;
  if (o.trial !== undefined && !isCardSlot(o.trial)) return undefined;
  const bad = o.bad ?? [];
  if (!Array.isArray(bad) || !bad.every(isCardSlot)) return undefined;
  return { format: 'vigil-ab/1', ...(isCardSlot(o.trial) ? { trial: o.trial } : {}), bad };
}

/** What the firmware tells the running system, and how to reboot through it. */
export interface BootFirmware {
  /** The boot partition number this boot came from, and whether the tryboot flag chose it. */
  booted(): Promise<{ partition: number; tryboot: boolean } | undefined>;
  /** Reboot; with `tryboot`, once into autoboot.txt's [tryboot] partition. */
  reboot(tryboot: boolean): Promise<void>;
  /** Why this board cannot switch slots through autoboot.txt (undefined: it can). */
  abUnsupported?(): Promise<string | undefined>;
}

function u32be(b: Buffer | undefined): number | undefined {
  return b !== undefined && b.length >= 4 ? b.readUInt32BE(0) : undefined;
}

/** The Pi 4/5 bootloader: /proc/device-tree/chosen/bootloader/{partition,tryboot}. */
export class PiFirmware implements BootFirmware {
  readonly #dtDir: string;
  readonly #fs: DurableFs;

  constructor(dtDir: string, fs: DurableFs) {
    this.#dtDir = dtDir;
    this.#fs = fs;
  }

  async booted(): Promise<{ partition: number; tryboot: boolean } | undefined> {
    const partition = u32be(await this.#fs.readIfExists(join(this.#dtDir, 'partition')));
    if (partition === undefined) return undefined;
    const flag = u32be(await this.#fs.readIfExists(join(this.#dtDir, 'tryboot')));
    return { partition, tryboot: flag === 1 };
  }

  async reboot(tryboot: boolean): Promise<void> {
    await run('systemctl', tryboot ? ['reboot', '0 tryboot'] : ['reboot'], { timeoutMs: 30_000 });
  }

  /** Pi 3 and Zero 2 W boot partition 1 whatever autoboot.txt says (docs/decisions.md). */
  async abUnsupported(): Promise<string | undefined> {
    const model = (await this.#fs.readIfExists(join(this.#dtDir, '..', '..', 'model')))
      ?.toString('utf8')
      .replace(/\0/g, '');
    if (model !== undefined && /Raspberry Pi (3|Zero 2)/.test(model))
      return `${model}: its boot ROM ignores autoboot.txt; OS updates need the Pi 3 / Zero 2 W scheme of docs/ota.md (not implemented yet)`;
    return undefined;
  }
}

/**
 * The amd64 twin: the qemu harness plays the firmware. It reads autoboot.txt and
 * TRYBOOT_FLAG_FILE from the boot FAT, deletes the flag (one shot), and boots the
 * chosen slot's kernel with `vigil.boot_partition=N vigil.tryboot=0|1`.
 */
export class TwinFirmware implements BootFirmware {
  readonly #cmdlineFile: string;
  readonly #selectorDir: string;
  readonly #fs: DurableFs;
  readonly #reboot: () => Promise<void>;

  constructor(
    cmdlineFile: string,
    selectorDir: string,
    fs: DurableFs,
    reboot: () => Promise<void> = async () => {
      await run('systemctl', ['reboot'], { timeoutMs: 30_000 });
    },
  ) {
    this.#cmdlineFile = cmdlineFile;
    this.#selectorDir = selectorDir;
    this.#fs = fs;
    this.#reboot = reboot;
  }

  async booted(): Promise<{ partition: number; tryboot: boolean } | undefined> {
    const b = await this.#fs.readIfExists(this.#cmdlineFile);
    if (b === undefined) return undefined;
    return parseTwinCmdline(b.toString('utf8'));
  }

  async reboot(tryboot: boolean): Promise<void> {
    if (tryboot)
      await this.#fs.writeFileAtomic(join(this.#selectorDir, TRYBOOT_FLAG_FILE), '1\n', 'tryboot');
    await this.#reboot();
  }
}

/** `vigil.boot_partition=N vigil.tryboot=0|1` on the twin's kernel command line. */
export function parseTwinCmdline(
  cmdline: string,
): { partition: number; tryboot: boolean } | undefined {
  const part = /(?:^|\s)vigil\.boot_partition=(\d+)(?:\s|$)/.exec(cmdline);
  if (!part) return undefined;
  const tb = /(?:^|\s)vigil\.tryboot=([01])(?:\s|$)/.exec(cmdline);
  return { partition: Number(part[1]), tryboot: tb?.[1] === '1' };
}

export interface RaucBackendOptions {
  /** Mount point of the partition holding autoboot.txt (FIRMWARE_MOUNT through HostPaths). */
  readonly selectorDir: string;
  readonly fs: DurableFs;
  readonly firmware: BootFirmware;
}

export class RaucBootBackend {
  readonly #o: RaucBackendOptions;

  constructor(o: RaucBackendOptions) {
    this.#o = o;
  }

  #slotOfPartition(n: number): CardSlot {
    if (n === BOOT_PARTITIONS.a) return 'a';
    if (n === BOOT_PARTITIONS.b) return 'b';
    throw new RaucBackendError(`boot partition ${String(n)} is neither slot A nor B`);
  }

  #slotOfName(name: string | undefined): CardSlot {
    const s = name === undefined ? undefined : slotOfBootname(name);
    if (s === undefined)
      throw new RaucBackendError(
        `unknown boot name "${String(name)}" (known: ${SLOT_BOOTNAMES.a}, ${SLOT_BOOTNAMES.b})`,
      );
    return s;
  }

  async committed(): Promise<CardSlot> {
    const path = join(this.#o.selectorDir, 'autoboot.txt');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      throw new RaucBackendError(`cannot read ${path}`, { cause: e });
    }
    return this.#slotOfPartition(parseAutoboot(text).normal);
  }

  async #state(): Promise<BackendState> {
    const path = join(this.#o.selectorDir, STATE_FILE);
    const b = await this.#o.fs.readIfExists(path);
    if (b === undefined) return { format: 'vigil-ab/1', bad: [] };
    // A torn state file loses at most a pending trial: the committed slot stays primary.
    return decodeBackendState(b.toString('utf8')) ?? { format: 'vigil-ab/1', bad: [] };
  }

  async #writeState(s: BackendState): Promise<void> {
    const clean: BackendState = {
      format: 'vigil-ab/1',
      ...(s.trial !== undefined ? { trial: s.trial } : {}),
      bad: [...new Set(s.bad)].sort(),
    };
    await this.#o.fs.writeFileAtomic(
      join(this.#o.selectorDir, STATE_FILE),
      `${JSON.stringify(clean)}\n`,
      'rauc-backend-state',
    );
  }

  /** The booted slot and whether the firmware's tryboot flag chose it. */
  async booted(): Promise<{ slot: CardSlot; trial: boolean } | undefined> {
    const b = await this.#o.firmware.booted();
    if (b === undefined) return undefined;
    return { slot: this.#slotOfPartition(b.partition), trial: b.tryboot };
  }

  /** The pending trial slot, if one is recorded and differs from the committed slot. */
  async pendingTrial(): Promise<CardSlot | undefined> {
    const [s, committed] = await Promise.all([this.#state(), this.committed()]);
    return s.trial !== undefined && s.trial !== committed ? s.trial : undefined;
  }

  async getPrimary(): Promise<CardSlot> {
    return (await this.pendingTrial()) ?? (await this.committed());
  }

  async setPrimary(slot: CardSlot): Promise<void> {
    const [s, committed] = await Promise.all([this.#state(), this.committed()]);
    if (slot !== committed) {
      // Refused here, RAUC's install fails and nothing will boot the slot it wrote.
      const why = await this.#o.firmware.abUnsupported?.();
      if (why !== undefined) throw new RaucBackendError(why);
    }
    const bad = s.bad.filter((x) => x !== slot);
    if (slot === committed) await this.#writeState({ format: 'vigil-ab/1', bad });
    else await this.#writeState({ format: 'vigil-ab/1', trial: slot, bad });
  }

  async getState(slot: CardSlot): Promise<'good' | 'bad'> {
    return (await this.#state()).bad.includes(slot) ? 'bad' : 'good';
  }

  async setState(slot: CardSlot, state: 'good' | 'bad'): Promise<void> {
    const s = await this.#state();
    if (state === 'bad') {
      await this.#writeState({
        format: 'vigil-ab/1',
        ...(s.trial !== undefined && s.trial !== slot ? { trial: s.trial } : {}),
        bad: [...s.bad, slot],
      });
      return;
    }
    const booted = await this.booted();
    const committed = await this.committed();
    if (booted?.slot === slot && booted.trial && slot !== committed) {
      // The commit point: from here on a plain boot starts this slot.
      await this.#o.fs.writeFileAtomic(
        join(this.#o.selectorDir, 'autoboot.txt'),
        autobootTxt(slot),
        'autoboot',
      );
      await this.#writeState({ format: 'vigil-ab/1', bad: s.bad.filter((x) => x !== slot) });
      return;
    }
    await this.#writeState({
      format: 'vigil-ab/1',
      ...(s.trial !== undefined ? { trial: s.trial } : {}),
      bad: s.bad.filter((x) => x !== slot),
    });
  }

  /** Reboot into the primary slot: once through tryboot when it is a pending trial. */
  async rebootIntoPrimary(): Promise<CardSlot> {
    const trial = await this.pendingTrial();
    if (trial !== undefined) {
      const autoboot = parseAutoboot(
        await readFile(join(this.#o.selectorDir, 'autoboot.txt'), 'utf8'),
      );
      if (!autoboot.abEnabled || autoboot.tryboot !== BOOT_PARTITIONS[trial])
        throw new RaucBackendError(
          `autoboot.txt does not try slot ${SLOT_BOOTNAMES[trial]} on tryboot`,
        );
      await this.#o.firmware.reboot(true);
      return trial;
    }
    await this.#o.firmware.reboot(false);
    return this.committed();
  }

  /** RAUC's interface: argv after the executable's name; returns what goes to stdout. */
  async handle(argv: readonly string[]): Promise<string> {
    const [cmd, a1, a2] = argv;
    const arity = (n: number): void => {
      if (argv.length !== n + 1)
        throw new RaucBackendError(`${String(cmd)} takes ${String(n)} argument(s)`);
    };
    switch (cmd) {
      case 'get-primary':
        arity(0);
        return `${SLOT_BOOTNAMES[await this.getPrimary()]}\n`;
      case 'set-primary':
        arity(1);
        await this.setPrimary(this.#slotOfName(a1));
        return '';
      case 'get-state':
        arity(1);
        return `${await this.getState(this.#slotOfName(a1))}\n`;
      case 'set-state': {
        arity(2);
        if (a2 !== 'good' && a2 !== 'bad')
          throw new RaucBackendError(`set-state: state must be good or bad, not "${String(a2)}"`);
        await this.setState(this.#slotOfName(a1), a2);
        return '';
      }
      case 'get-current': {
        arity(0);
        const b = await this.booted();
        if (b === undefined) throw new RaucBackendError('the firmware did not say what it booted');
        return `${SLOT_BOOTNAMES[b.slot]}\n`;
      }
      case undefined:
      default:
        throw new RaucBackendError(
          `unknown command "${String(cmd)}" (get-primary, set-primary, get-state, set-state, get-current)`,
        );
    }
  }
}

/** The firmware this board has: the Pi's device tree, else the twin's command line. */
async function firmwareOf(paths: HostPaths, fs: DurableFs): Promise<BootFirmware> {
  const dt = paths.host('/proc/device-tree/chosen/bootloader');
  if ((await fs.readIfExists(join(dt, 'partition'))) !== undefined) return new PiFirmware(dt, fs);
  return new TwinFirmware(paths.host('/proc/cmdline'), paths.host(FIRMWARE_MOUNT), fs);
}

/**
 * The running board's backend: the Pi firmware when the device tree names the boot partition,
 * else the twin's (the qemu harness plays the firmware). Used by RAUC's backend process
 * (bin/rauc-backend.ts), `vigil ota rauc-backend` and the hub's OS agent.
 */
export async function boardBackend(paths: HostPaths, fs: DurableFs): Promise<RaucBootBackend> {
  return new RaucBootBackend({
    selectorDir: paths.host(FIRMWARE_MOUNT),
    fs,
    firmware: await firmwareOf(paths, fs),
  });
}
