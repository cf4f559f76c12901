/**
 * Guest-side discovery and control of the kernel's virtual devices, for `.ts` scenarios:
 * gpio-mockup chips (resolved from their label, never from hard-coded numbers), V4L2 nodes by
 * driver, and module loading. See test/system/README.md.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { run } from '../../../hw/os/run.js';
import { fail } from './harness.js';

const SYSFS_GPIO = '/sys/class/gpio';
const MOCKUP_PLATFORM = '/sys/bus/platform/devices';
const MOCKUP_DEBUGFS = '/sys/kernel/debug/gpio-mockup';

async function readTrim(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}

/** modprobe with parameters; a failure ends the scenario with modprobe's message. */
export async function loadModule(name: string, params: readonly string[] = []): Promise<void> {
  try {
    await run('modprobe', [name, ...params], { timeoutMs: 60_000 });
  } catch (err) {
    fail(`modprobe ${name} failed`, err);
  }
}

export interface MockupChip {
  /** e.g. "gpio-mockup-A" (the first chip; its lines are named "gpio-mockup-A-<offset>"). */
  readonly label: string;
  /** sysfs GPIO number of line 0 (the kernel chooses it; 512+ on recent kernels). */
  readonly base: number;
  readonly ngpio: number;
  /** Character device, e.g. /dev/gpiochip0. */
  readonly chipDev: string;
  /** debugfs directory with one file per line: write 0/1 to drive an input. */
  readonly debugfsDir: string;
}

/** Load gpio-mockup (one chip, `lines` named lines) unless it is loaded already. */
export async function loadGpioMockup(lines = 32): Promise<MockupChip> {
  const loaded = (await readFile('/proc/modules', 'utf8'))
    .split('\n')
    .some((l) => l.startsWith('gpio_mockup '));
  if (!loaded) {
    await loadModule('gpio-mockup', [
      `gpio_mockup_ranges=-1,${lines}`,
      'gpio_mockup_named_lines=1',
    ]);
  }
  return findGpioMockup();
}

/** The mockup chip labelled `label`, from sysfs (base/ngpio) and the platform device (chip). */
export async function findGpioMockup(label = 'gpio-mockup-A'): Promise<MockupChip> {
  let base: number | undefined;
  let ngpio = 0;
  for (const e of await readdir(SYSFS_GPIO)) {
    if (!e.startsWith('gpiochip')) continue;
    const l = await readTrim(`${SYSFS_GPIO}/${e}/label`).catch(() => '');
    if (l !== label) continue;
    base = Number(await readTrim(`${SYSFS_GPIO}/${e}/base`));
    ngpio = Number(await readTrim(`${SYSFS_GPIO}/${e}/ngpio`));
  }
  if (base === undefined) fail(`no GPIO chip labelled ${label} in ${SYSFS_GPIO}`);
  // gpio-mockup.0 is the platform device of chip A; its gpiochipN child names the cdev
  const index = label.charCodeAt(label.length - 1) - 'A'.charCodeAt(0);
  const dev = `${MOCKUP_PLATFORM}/gpio-mockup.${index}`;
  const chip = (await readdir(dev).catch(() => [])).find((e) => /^gpiochip\d+$/.test(e));
  if (chip === undefined) fail(`no gpiochip under ${dev}`);
  return { label, base, ngpio, chipDev: `/dev/${chip}`, debugfsDir: `${MOCKUP_DEBUGFS}/${chip}` };
}

/** Put a level on a line from the outside (what a button does to an input). */
export async function driveMockupLine(
  chip: MockupChip,
  offset: number,
  value: 0 | 1,
): Promise<void> {
  await writeFile(`${chip.debugfsDir}/${offset}`, String(value));
}

/** The level the chip sees on a line (for an output: what its consumer drives). */
export async function readMockupLine(chip: MockupChip, offset: number): Promise<0 | 1> {
  return (await readTrim(`${chip.debugfsDir}/${offset}`)) === '1' ? 1 : 0;
}

/** First /dev/videoN whose sysfs name contains `nameIncludes` (e.g. "vivid", "vicodec"). */
export async function findVideoDevice(nameIncludes: string): Promise<string | undefined> {
  const dir = '/sys/class/video4linux';
  const nodes = (await readdir(dir).catch(() => []))
    .filter((e) => /^video\d+$/.test(e))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  for (const n of nodes) {
    const name = await readTrim(`${dir}/${n}/name`).catch(() => '');
    if (name.includes(nameIncludes)) return `/dev/${n}`;
  }
  return undefined;
}

/** Load vivid with one capture node; its /dev/videoN. */
export async function loadVivid(): Promise<string> {
  const existing = await findVideoDevice('vivid');
  if (existing !== undefined) return existing;
  await loadModule('vivid', ['n_devs=1', 'node_types=0x1']);
  for (let i = 0; i < 100; i++) {
    const dev = await findVideoDevice('vivid');
    if (dev !== undefined) return dev;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return fail('vivid loaded but no capture node appeared');
}
