/**
 * The hub's front panel: the pairing/reset button and the status LED, wired
 * to the supervisor (docs/pairing.md, "Button and LED").
 *
 *   short press   -> `pairing-requested`: the pairing window opens (also on a
 *                    paired hub: to add a phone or give it a new home network)
 *   hold >= 5 s   -> the LED flickers for 2 s ("factory-reset" pattern) while
 *                    the reset starts (`factory-reset-requested`); the window
 *                    opens once the reset has erased what pairing established
 *   the LED       -> follows the supervisor state, and recording while running
 *                    (`ledPatternFor`, pure)
 *
 * GPIO lines come from the `gpio` section of the config. No GPIO chip (a VM, a
 * laptop, a board without the button) is not an error: the hub runs without a
 * panel and logs why.
 */
import type { VigilConfig } from '../config/config.js';
import type { Logger } from '../../base/logger.js';
import { ButtonWatcher } from '../../hw/gpio/button.js';
import { GpioError, listChips } from '../../hw/gpio/gpio.js';
import type { GpioBackend, InputLine, OutputLine } from '../../hw/gpio/gpio.js';
import { PATTERNS, StatusLed } from '../../hw/gpio/led.js';
import type { LedPattern } from '../../hw/gpio/led.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';
import { INITIAL_STATE } from './state.js';
import type { Event, State } from './state.js';

/** Labels of the Raspberry Pi's main GPIO chip, tried in order by `chip: "auto"`. */
export const PI_CHIP_LABELS = [
  'pinctrl-rp1',
  'pinctrl-bcm2712',
  'pinctrl-bcm2711',
  'pinctrl-bcm2835',
];

/** How long the factory-reset confirmation plays before the LED follows the state again. */
export const FACTORY_RESET_CONFIRM_MS = PATTERNS['factory-reset'].steps.reduce((a, b) => a + b, 0);

/** The LED pattern for a supervisor state (pure). */
export function ledPatternFor(state: State, recording: boolean): LedPattern {
  switch (state.name) {
    case 'booting':
    case 'locked':
    case 'unlocked':
      return 'locked';
    case 'pairing':
      return state.windowClosed !== undefined ? 'idle' : 'pairing';
    case 'running':
      return recording ? 'recording' : 'paired';
    case 'updating':
      return 'paired';
    case 'degraded':
    case 'failed':
      return 'error';
    case 'stopping':
      return 'off';
  }
}

/** May a factory reset start in this state? (Mirrors state.ts: data volume unlocked, no update.) */
export function canFactoryReset(state: State): boolean {
  switch (state.name) {
    case 'unlocked':
    case 'pairing':
    case 'running':
      return true;
    case 'degraded':
      return state.dataDir !== undefined;
    case 'booting':
    case 'locked':
    case 'updating':
    case 'failed':
    case 'stopping':
      return false;
  }
}

export interface PanelButton {
  on(event: 'short-press' | 'long-press', listener: () => void): unknown;
}

export interface PanelLed {
  show(pattern: LedPattern): void;
}

export interface PanelOptions {
  readonly button?: PanelButton;
  readonly led?: PanelLed;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Release the GPIO lines. */
  readonly release?: () => void;
}

export class Panel {
  readonly #o: PanelOptions;
  readonly #clock: Clock;
  #dispatch: ((e: Event) => void) | undefined;
  #state: State = INITIAL_STATE;
  #recording = false;
  #confirming: { cancel(): void } | undefined;
  #closed = false;

  constructor(o: PanelOptions) {
    this.#o = o;
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    o.button?.on('short-press', () => {
      this.#shortPress();
    });
    o.button?.on('long-press', () => {
      this.#longPress();
    });
    this.#show();
  }

  /** True when a button or an LED is wired. */
  get present(): boolean {
    return this.#o.button !== undefined || this.#o.led !== undefined;
  }

  /** Where button presses go (the supervisor's executor). */
  attach(dispatch: (e: Event) => void): void {
    this.#dispatch = dispatch;
  }

  /** The supervisor entered a state. */
  onState(state: State): void {
    this.#state = state;
    this.#show();
  }

  /** Media started or stopped recording a clip. */
  setRecording(recording: boolean): void {
    if (recording === this.#recording) return;
    this.#recording = recording;
    this.#show();
  }

  #show(): void {
    if (this.#closed || this.#confirming) return;
    this.#o.led?.show(ledPatternFor(this.#state, this.#recording));
  }

  #shortPress(): void {
    if (this.#closed) return;
    this.#o.logger.info('button: short press; opening the pairing window', {
      state: this.#state.name,
    });
    this.#dispatch?.({ type: 'pairing-requested' });
  }

  #longPress(): void {
    if (this.#closed) return;
    if (!canFactoryReset(this.#state)) {
      this.#o.logger.warn('button: factory reset refused in this state', {
        state: this.#state.name,
      });
      return;
    }
    this.#o.logger.warn('button: held 5 s; factory reset', { state: this.#state.name });
    this.#o.led?.show('factory-reset');
    this.#confirming = this.#clock.setTimeout(() => {
      this.#confirming = undefined;
      this.#show();
    }, FACTORY_RESET_CONFIRM_MS);
    this.#dispatch?.({ type: 'factory-reset-requested' });
  }

  close(): void {
    if (this.#closed) return;
    this.#confirming?.cancel();
    this.#confirming = undefined;
    this.#o.led?.show('off');
    this.#closed = true;
    this.#o.release?.();
  }
}

export interface OpenPanelOptions {
  readonly config: VigilConfig['gpio'];
  readonly backend: GpioBackend;
  readonly paths: HostPaths;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** Find the configured chip ("auto": the Pi's main chip); undefined (logged) when absent. */
async function chipLabel(o: OpenPanelOptions): Promise<string | undefined> {
  const log = o.logger;
  let labels: string[];
  try {
    labels = (await listChips(o.paths)).map((c) => c.label);
  } catch (e) {
    log.warn('no GPIO: running without button and status LED', {
      reason: e instanceof GpioError ? e.message : String(e),
    });
    return undefined;
  }
  const wanted = o.config.chip === 'auto' ? PI_CHIP_LABELS : [o.config.chip];
  const found = wanted.find((l) => labels.includes(l));
  if (found === undefined)
    log.warn('no matching GPIO chip: running without button and status LED', {
      wanted: wanted.join(','),
      found: labels.join(',') || 'none',
    });
  return found;
}

/** Open the button and the LED from the config; parts that cannot open are left out (logged). */
export async function openPanel(o: OpenPanelOptions): Promise<Panel> {
  const log = o.logger;
  const cfg = o.config;
  if (!cfg.enabled) {
    log.info('GPIO panel disabled in the config');
    return new Panel({ logger: log });
  }
  const chip = await chipLabel(o);
  if (chip === undefined) return new Panel({ logger: log });
  let input: InputLine | undefined;
  let output: OutputLine | undefined;
  try {
    input = await o.backend.input(
      { chipLabel: chip, offset: cfg.button },
      { activeLow: cfg.buttonActiveLow, debounceMs: 20 },
    );
  } catch (e) {
    log.warn('button line unavailable', { chip, offset: cfg.button, error: e });
  }
  try {
    output = await o.backend.output(
      { chipLabel: chip, offset: cfg.led },
      { activeLow: cfg.ledActiveLow },
    );
  } catch (e) {
    log.warn('status LED line unavailable', { chip, offset: cfg.led, error: e });
  }
  log.info('GPIO panel', {
    chip,
    button: input ? cfg.button : null,
    led: output ? cfg.led : null,
  });
  const clock = o.clock ?? SYSTEM_CLOCK;
  return new Panel({
    ...(input ? { button: new ButtonWatcher(input, clock) } : {}),
    ...(output ? { led: new StatusLed(output, clock) } : {}),
    logger: log,
    clock,
    release: () => {
      input?.close();
      output?.close();
    },
  });
}
