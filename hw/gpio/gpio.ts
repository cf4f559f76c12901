/**
 * GPIO for the pairing/reset button and the status LED.
 *
 * Lines are named by chip label + offset and resolved through sysfs
 * (`/sys/class/gpio/gpiochipN/{label,base,ngpio}`), never by a hard-coded
 * global number: the base is 512+ on Pi kernels >= 6.6 and 992 on gpio-mockup.
 *
 * Port: `GpioBackend` (input with edge callbacks, output). Real adapter:
 * `OnoffGpio` (onoff, sysfs; docs/decisions.md). Fake: `FakeGpio`.
 * On top: `ButtonWatcher` (short press / 5 s hold) and `StatusLed` (patterns).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError } from '../../base/errors.js';
import type { HostPaths } from '../os/host-paths.js';

export class GpioError extends VigilError {
  constructor(
    code: 'EGPIO_CHIP' | 'EGPIO_LINE' | 'EGPIO_IO',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'GpioError';
  }
}

export interface LineSpec {
  /** gpiochip label, e.g. "pinctrl-bcm2711" (Pi 4), "pinctrl-rp1" (Pi 5), "gpio-mockup-A". */
  readonly chipLabel: string;
  /** Offset on that chip (the BCM number on a Pi's main chip). */
  readonly offset: number;
}

export interface ChipInfo {
  readonly label: string;
  readonly base: number;
  readonly ngpio: number;
}

/** List gpiochips from sysfs. */
export async function listChips(paths: HostPaths): Promise<ChipInfo[]> {
  const dir = paths.host('/sys/class/gpio');
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith('gpiochip'));
  } catch (e) {
    throw new GpioError(
      'EGPIO_CHIP',
      `no sysfs GPIO interface at ${dir} (kernel without CONFIG_GPIO_SYSFS?)`,
      { cause: e },
    );
  }
  const chips: ChipInfo[] = [];
  for (const n of names) {
    const read = async (f: string) => (await readFile(join(dir, n, f), 'utf8')).trim();
    try {
      chips.push({
        label: await read('label'),
        base: Number(await read('base')),
        ngpio: Number(await read('ngpio')),
      });
    } catch {
      /* a chip going away while we look: skip it */
    }
  }
  return chips;
}

/** Global sysfs number of a line, from its chip label and offset. */
export async function resolveLine(paths: HostPaths, line: LineSpec): Promise<number> {
  const chips = await listChips(paths);
  const matches = chips.filter((c) => c.label === line.chipLabel);
  if (matches.length === 0) {
    throw new GpioError(
      'EGPIO_CHIP',
      `no GPIO chip labelled "${line.chipLabel}" (found: ${chips.map((c) => c.label).join(', ') || 'none'})`,
    );
  }
  if (matches.length > 1)
    throw new GpioError('EGPIO_CHIP', `several GPIO chips are labelled "${line.chipLabel}"`);
  const chip = matches[0] as ChipInfo;
  if (!Number.isInteger(line.offset) || line.offset < 0 || line.offset >= chip.ngpio) {
    throw new GpioError(
      'EGPIO_LINE',
      `line ${line.offset} is outside chip "${chip.label}" (0..${chip.ngpio - 1})`,
    );
  }
  return chip.base + line.offset;
}

export interface InputLine {
  read(): Promise<0 | 1>;
  /** Called on every edge with the new value. */
  watch(cb: (value: 0 | 1) => void): void;
  close(): void;
}

export interface OutputLine {
  write(value: 0 | 1): Promise<void>;
  close(): void;
}

export interface GpioBackend {
  input(line: LineSpec, opts?: { activeLow?: boolean; debounceMs?: number }): Promise<InputLine>;
  output(line: LineSpec, opts?: { activeLow?: boolean }): Promise<OutputLine>;
}

interface OnoffGpioInstance {
  read(): Promise<0 | 1>;
  write(v: 0 | 1): Promise<void>;
  watch(cb: (err: Error | null | undefined, value: 0 | 1) => void): void;
  unexport(): void;
}

type OnoffCtor = new (
  gpio: number,
  direction: string,
  edge?: string,
  options?: Record<string, unknown>,
) => OnoffGpioInstance;

/** Real adapter: onoff over sysfs (native module loaded lazily, only on hardware). */
export class OnoffGpio implements GpioBackend {
  readonly #paths: HostPaths;
  #ctor: OnoffCtor | undefined;

  constructor(paths: HostPaths) {
    this.#paths = paths;
  }

  async #onoff(): Promise<OnoffCtor> {
    if (!this.#ctor) {
      const m = (await import('onoff')) as unknown as { Gpio: OnoffCtor };
      this.#ctor = m.Gpio;
    }
    return this.#ctor;
  }

  async input(
    line: LineSpec,
    opts: { activeLow?: boolean; debounceMs?: number } = {},
  ): Promise<InputLine> {
    const n = await resolveLine(this.#paths, line);
    const Gpio = await this.#onoff();
    let g: OnoffGpioInstance;
    try {
      g = new Gpio(n, 'in', 'both', {
        activeLow: opts.activeLow ?? false,
        debounceTimeout: opts.debounceMs ?? 20,
      });
    } catch (e) {
      throw new GpioError(
        'EGPIO_IO',
        `cannot open GPIO ${n} (${line.chipLabel}:${line.offset}) as input`,
        { cause: e },
      );
    }
    return {
      read: () => g.read(),
      watch: (cb) => {
        g.watch((err, value) => {
          if (!err) cb(value);
        });
      },
      close: () => {
        g.unexport();
      },
    };
  }

  async output(line: LineSpec, opts: { activeLow?: boolean } = {}): Promise<OutputLine> {
    const n = await resolveLine(this.#paths, line);
    const Gpio = await this.#onoff();
    let g: OnoffGpioInstance;
    try {
      g = new Gpio(n, 'low', undefined, { activeLow: opts.activeLow ?? false });
    } catch (e) {
      throw new GpioError(
        'EGPIO_IO',
        `cannot open GPIO ${n} (${line.chipLabel}:${line.offset}) as output`,
        { cause: e },
      );
    }
    return {
      write: (v) => g.write(v),
      close: () => {
        g.unexport();
      },
    };
  }
}

/** In-memory lines (tests, `vigil dev`). */
export class FakeGpio implements GpioBackend {
  readonly values = new Map<string, 0 | 1>();
  readonly writes: [string, 0 | 1][] = [];
  readonly #watchers = new Map<string, ((v: 0 | 1) => void)[]>();

  static key(l: LineSpec): string {
    return `${l.chipLabel}:${l.offset}`;
  }

  /** Drive an input as the hardware would. */
  drive(line: LineSpec, v: 0 | 1): void {
    const k = FakeGpio.key(line);
    this.values.set(k, v);
    for (const cb of this.#watchers.get(k) ?? []) cb(v);
  }

  input(line: LineSpec): Promise<InputLine> {
    const k = FakeGpio.key(line);
    return Promise.resolve({
      read: () => Promise.resolve(this.values.get(k) ?? 0),
      watch: (cb) => {
        this.#watchers.set(k, [...(this.#watchers.get(k) ?? []), cb]);
      },
      close: () => {
        this.#watchers.delete(k);
      },
    });
  }

  output(line: LineSpec): Promise<OutputLine> {
    const k = FakeGpio.key(line);
    return Promise.resolve({
      write: (v) => {
        this.values.set(k, v);
        this.writes.push([k, v]);
        return Promise.resolve();
      },
      close: () => undefined,
    });
  }
}
