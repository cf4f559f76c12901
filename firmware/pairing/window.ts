/**
 * The pairing window policy (Matter's bar): the window opens on first boot,
 * after a factory reset and on a short button press; it closes after 15
 * minutes, after 20 failed attempts, or when a phone has paired. An attempt
 * made while the window is closed is refused — so the 21st attempt is.
 *
 * `transition` is pure; `PairingWindow` adds the clock and the timer.
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../../base/clock.js';
import { SYSTEM_CLOCK } from '../../base/clock.js';

export const WINDOW_MS = 15 * 60 * 1000;
export const MAX_FAILED_ATTEMPTS = 20;

export type OpenReason = 'first-boot' | 'button' | 'factory-reset' | 'handoff-failed';
export type CloseReason = 'timeout' | 'failures' | 'paired' | 'cancelled';

export type WindowState =
  | { readonly open: false; readonly closedBy: CloseReason | 'never'; readonly failures: number }
  | {
      readonly open: true;
      readonly reason: OpenReason;
      readonly openedAt: number;
      readonly failures: number;
    };

export type WindowEvent =
  | { readonly type: 'opened'; readonly reason: OpenReason; readonly at: number }
  | { readonly type: 'attempt-failed'; readonly at: number }
  | { readonly type: 'paired'; readonly at: number }
  | { readonly type: 'cancelled'; readonly at: number }
  | { readonly type: 'tick'; readonly at: number };

export const INITIAL_WINDOW: WindowState = { open: false, closedBy: 'never', failures: 0 };

export function transition(s: WindowState, e: WindowEvent): WindowState {
  switch (e.type) {
    case 'opened':
      // (re)opening starts a fresh 15 minutes and a fresh failure budget
      return { open: true, reason: e.reason, openedAt: e.at, failures: 0 };
    case 'attempt-failed': {
      if (!s.open) return s;
      const failures = s.failures + 1;
      if (failures >= MAX_FAILED_ATTEMPTS) return { open: false, closedBy: 'failures', failures };
      return e.at - s.openedAt >= WINDOW_MS
        ? { open: false, closedBy: 'timeout', failures }
        : { ...s, failures };
    }
    case 'paired':
      return { open: false, closedBy: 'paired', failures: s.failures };
    case 'cancelled':
      return s.open ? { open: false, closedBy: 'cancelled', failures: s.failures } : s;
    case 'tick':
      return s.open && e.at - s.openedAt >= WINDOW_MS
        ? { open: false, closedBy: 'timeout', failures: s.failures }
        : s;
  }
}

export type Admission =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly code: 'EWINDOW_CLOSED' | 'EWINDOW_FAILURES';
      readonly message: string;
    };

/** May a new attempt start now? (Pure.) */
export function admit(s: WindowState, at: number): Admission {
  const t = transition(s, { type: 'tick', at });
  if (t.open) return { ok: true };
  if (t.closedBy === 'failures') {
    return {
      ok: false,
      code: 'EWINDOW_FAILURES',
      message: `pairing window closed after ${MAX_FAILED_ATTEMPTS} failed attempts; press the button to reopen it`,
    };
  }
  return {
    ok: false,
    code: 'EWINDOW_CLOSED',
    message: 'pairing window is closed; press the button on the hub to open it',
  };
}

export interface PairingWindowEvents {
  opened: [OpenReason];
  closed: [CloseReason];
}

export class PairingWindow extends EventEmitter<PairingWindowEvents> {
  #state: WindowState = INITIAL_WINDOW;
  readonly #clock: Clock;
  #timer: { cancel(): void } | undefined;

  constructor(clock: Clock = SYSTEM_CLOCK) {
    super();
    this.#clock = clock;
  }

  get state(): WindowState {
    return this.#state;
  }

  get isOpen(): boolean {
    return transition(this.#state, { type: 'tick', at: this.#clock.now() }).open;
  }

  #apply(e: WindowEvent): void {
    const before = this.#state;
    this.#state = transition(before, e);
    const after = this.#state;
    if (after.open && (!before.open || e.type === 'opened')) {
      this.#timer?.cancel();
      this.#timer = this.#clock.setTimeout(() => {
        this.#apply({ type: 'tick', at: this.#clock.now() });
      }, WINDOW_MS);
      this.emit('opened', after.reason);
    } else if (before.open && !after.open) {
      this.#timer?.cancel();
      this.#timer = undefined;
      if (after.closedBy !== 'never') this.emit('closed', after.closedBy);
    }
  }

  open(reason: OpenReason): void {
    this.#apply({ type: 'opened', reason, at: this.#clock.now() });
  }
  failed(): void {
    this.#apply({ type: 'attempt-failed', at: this.#clock.now() });
  }
  paired(): void {
    this.#apply({ type: 'paired', at: this.#clock.now() });
  }
  cancel(): void {
    this.#apply({ type: 'cancelled', at: this.#clock.now() });
  }
  admit(): Admission {
    this.#apply({ type: 'tick', at: this.#clock.now() });
    return admit(this.#state, this.#clock.now());
  }
}
