/**
 * The supervisor's pure state machine. `transition(state, event)` decides what
 * happens next and returns the effects to run as data; it never performs I/O.
 * The executor (executor.ts) runs effects and feeds their outcomes back as
 * events.
 *
 *   booting -> locked -> unlocked -> pairing | running -> updating -> running
 *                  \_________________________________________/
 *   any -> degraded (a child in a crash loop; the rest keeps running)
 *   any -> failed (unrecoverable; systemd restarts us)
 *   any -> stopping -> (exit)
 */

export type State =
  | { readonly name: 'booting' }
  | { readonly name: 'locked'; readonly reason: string; readonly waitingFor: string | undefined }
  | { readonly name: 'unlocked'; readonly dataDir: string }
  | {
      readonly name: 'pairing';
      readonly dataDir: string;
      readonly failedAttempts: number;
      /** Set when the window closed with no phone paired (timeout, failures); a press reopens it. */
      readonly windowClosed?: string;
    }
  | { readonly name: 'running'; readonly dataDir: string }
  | { readonly name: 'updating'; readonly dataDir: string; readonly version: string }
  | {
      readonly name: 'degraded';
      readonly dataDir: string | undefined;
      readonly reason: string;
      /** What we were doing when degraded; recovery returns here. */
      readonly resume: 'pairing' | 'running' | 'locked';
    }
  | { readonly name: 'failed'; readonly reason: string }
  | { readonly name: 'stopping'; readonly exitCode: number };

export type StateName = State['name'];

export type Event =
  | { readonly type: 'booted' }
  | { readonly type: 'storage-unlocked'; readonly dataDir: string }
  | { readonly type: 'storage-locked'; readonly reason: string; readonly waitingFor?: string }
  /** Periodic: try the key sources again (a disk or a key may have appeared). */
  | { readonly type: 'unlock-retry' }
  | { readonly type: 'pairing-state-loaded'; readonly paired: boolean }
  | { readonly type: 'paired' }
  | { readonly type: 'pairing-failed'; readonly reason: string }
  | { readonly type: 'pairing-requested' }
  /** The pairing window closed without a (new) phone; `paired`: a phone was paired before. */
  | { readonly type: 'pairing-closed'; readonly reason: string; readonly paired: boolean }
  /** The reset button was held >= 5 s (firmware/supervisor/panel.ts). */
  | { readonly type: 'factory-reset-requested' }
  | { readonly type: 'factory-reset-done' }
  | { readonly type: 'update-staged'; readonly version: string }
  | {
      readonly type: 'update-finished';
      readonly outcome: 'committed' | 'rolled-back';
      readonly version: string;
    }
  | { readonly type: 'child-crash-loop'; readonly child: string }
  | { readonly type: 'child-recovered'; readonly child: string }
  | { readonly type: 'fatal-error'; readonly reason: string }
  | { readonly type: 'stop-requested'; readonly exitCode?: number };

export type Effect =
  | { readonly type: 'unlock-storage' }
  | { readonly type: 'load-pairing-state'; readonly dataDir: string }
  | {
      readonly type: 'start-pairing';
      readonly dataDir: string;
      /** Why the window opens (default first-boot). */
      readonly reason?: 'first-boot' | 'button' | 'factory-reset';
    }
  | { readonly type: 'factory-reset'; readonly dataDir: string }
  | { readonly type: 'stop-pairing' }
  | { readonly type: 'start-services'; readonly dataDir: string }
  | { readonly type: 'stop-services' }
  | { readonly type: 'apply-update'; readonly version: string }
  | { readonly type: 'report-status'; readonly status: string }
  | { readonly type: 'shutdown'; readonly exitCode: number };

export interface Transition {
  readonly state: State;
  readonly effects: readonly Effect[];
}

export const INITIAL_STATE: State = { name: 'booting' };

/** How many failed pairing attempts close the window (Matter's bar). */
export const MAX_PAIRING_FAILURES = 20;

function dataDirOf(s: State): string | undefined {
  switch (s.name) {
    case 'unlocked':
    case 'pairing':
    case 'running':
    case 'updating':
      return s.dataDir;
    case 'degraded':
      return s.dataDir;
    case 'booting':
    case 'locked':
    case 'failed':
    case 'stopping':
      return undefined;
  }
}

/** A one-line human status for sd_notify STATUS= and the status API. */
export function describe(s: State): string {
  switch (s.name) {
    case 'booting':
      return 'booting';
    case 'locked':
      return `locked: ${s.reason}${s.waitingFor ? ` (waiting for ${s.waitingFor})` : ''}`;
    case 'unlocked':
      return 'storage unlocked';
    case 'pairing':
      return s.windowClosed !== undefined
        ? `pairing window closed (${s.windowClosed}); press the button to reopen it`
        : `pairing window open (${s.failedAttempts} failed attempts)`;
    case 'running':
      return 'running';
    case 'updating':
      return `updating to ${s.version}`;
    case 'degraded':
      return `degraded: ${s.reason}`;
    case 'failed':
      return `failed: ${s.reason}`;
    case 'stopping':
      return 'stopping';
  }
}

function to(state: State, ...effects: Effect[]): Transition {
  return { state, effects: [...effects, { type: 'report-status', status: describe(state) }] };
}

const stay = (state: State): Transition => ({ state, effects: [] });

/** stop, fatal errors and child health apply whatever the state. */
function globalTransition(state: State, event: Event): Transition | undefined {
  if (event.type === 'stop-requested') {
    if (state.name === 'stopping') return stay(state);
    const exitCode = event.exitCode ?? 0;
    return to({ name: 'stopping', exitCode }, { type: 'shutdown', exitCode });
  }
  if (event.type === 'fatal-error') {
    if (state.name === 'stopping' || state.name === 'failed') return stay(state);
    return to({ name: 'failed', reason: event.reason }, { type: 'shutdown', exitCode: 1 });
  }
  if (event.type === 'child-crash-loop') {
    if (state.name === 'stopping' || state.name === 'failed') return stay(state);
    const reason = `child "${event.child}" is in a crash loop`;
    if (state.name === 'degraded') return to({ ...state, reason });
    const resume =
      state.name === 'pairing'
        ? 'pairing'
        : state.name === 'locked' || state.name === 'booting'
          ? 'locked'
          : 'running';
    return to({ name: 'degraded', dataDir: dataDirOf(state), reason, resume });
  }
  if (event.type === 'factory-reset-requested') {
    // Only with the data volume unlocked (what a reset erases lives there) and never mid-update.
    const dataDir = dataDirOf(state);
    if (dataDir === undefined || state.name === 'updating') return stay(state);
    return to({ name: 'pairing', dataDir, failedAttempts: 0 }, { type: 'factory-reset', dataDir });
  }
  if (event.type === 'child-recovered') {
    if (state.name !== 'degraded') return stay(state);
    switch (state.resume) {
      case 'pairing':
        return state.dataDir !== undefined
          ? to({ name: 'pairing', dataDir: state.dataDir, failedAttempts: 0 })
          : stay(state);
      case 'running':
        return state.dataDir !== undefined
          ? to({ name: 'running', dataDir: state.dataDir })
          : stay(state);
      case 'locked':
        return to(
          { name: 'locked', reason: 'recovered', waitingFor: undefined },
          { type: 'unlock-storage' },
        );
    }
  }
  return undefined;
}

/** The pure transition function. Unexpected events leave the state unchanged. */
export function transition(state: State, event: Event): Transition {
  // Events that apply in every state first.
  const global = globalTransition(state, event);
  if (global !== undefined) return global;

  switch (state.name) {
    case 'booting':
      if (event.type === 'booted')
        return to(
          { name: 'locked', reason: 'unlocking storage', waitingFor: undefined },
          { type: 'unlock-storage' },
        );
      return stay(state);
    case 'locked':
      if (event.type === 'storage-unlocked')
        return to(
          { name: 'unlocked', dataDir: event.dataDir },
          { type: 'load-pairing-state', dataDir: event.dataDir },
        );
      if (event.type === 'storage-locked')
        return to({ name: 'locked', reason: event.reason, waitingFor: event.waitingFor });
      if (event.type === 'unlock-retry') return { state, effects: [{ type: 'unlock-storage' }] };
      return stay(state);
    case 'unlocked':
      if (event.type === 'pairing-state-loaded')
        return event.paired
          ? to(
              { name: 'running', dataDir: state.dataDir },
              { type: 'start-services', dataDir: state.dataDir },
            )
          : to(
              { name: 'pairing', dataDir: state.dataDir, failedAttempts: 0 },
              { type: 'start-pairing', dataDir: state.dataDir },
            );
      return stay(state);
    case 'pairing':
      if (event.type === 'paired')
        return to(
          { name: 'running', dataDir: state.dataDir },
          { type: 'stop-pairing' },
          { type: 'start-services', dataDir: state.dataDir },
        );
      if (event.type === 'pairing-requested')
        return to(
          { name: 'pairing', dataDir: state.dataDir, failedAttempts: 0 },
          { type: 'start-pairing', dataDir: state.dataDir, reason: 'button' },
        );
      if (event.type === 'factory-reset-done')
        return to(
          { name: 'pairing', dataDir: state.dataDir, failedAttempts: 0 },
          { type: 'start-pairing', dataDir: state.dataDir, reason: 'factory-reset' },
        );
      if (event.type === 'pairing-closed')
        return event.paired
          ? to(
              { name: 'running', dataDir: state.dataDir },
              { type: 'stop-pairing' },
              { type: 'start-services', dataDir: state.dataDir },
            )
          : to({ ...state, windowClosed: event.reason }, { type: 'stop-pairing' });
      if (event.type === 'pairing-failed') {
        const failedAttempts = state.failedAttempts + 1;
        // The pairing component enforces the limit itself; the supervisor mirrors it for status.
        if (failedAttempts >= MAX_PAIRING_FAILURES)
          return to(
            { name: 'pairing', dataDir: state.dataDir, failedAttempts },
            { type: 'stop-pairing' },
          );
        return to({ name: 'pairing', dataDir: state.dataDir, failedAttempts });
      }
      return stay(state);
    case 'running':
      // Services stop while the window is open (the radio serves the hotspot, and the
      // window's end starts them again: never two camera pipelines at once).
      if (event.type === 'pairing-requested')
        return to(
          { name: 'pairing', dataDir: state.dataDir, failedAttempts: 0 },
          { type: 'stop-services' },
          { type: 'start-pairing', dataDir: state.dataDir, reason: 'button' },
        );
      if (event.type === 'update-staged')
        return to(
          { name: 'updating', dataDir: state.dataDir, version: event.version },
          { type: 'apply-update', version: event.version },
        );
      return stay(state);
    case 'updating':
      if (event.type === 'update-finished') return to({ name: 'running', dataDir: state.dataDir });
      return stay(state);
    case 'degraded':
      // The button still opens the pairing window on a degraded hub (e.g. the camera fails):
      // a new home network or a new phone may be exactly what it needs.
      if (event.type === 'pairing-requested' && state.dataDir !== undefined)
        return to(
          { name: 'pairing', dataDir: state.dataDir, failedAttempts: 0 },
          { type: 'stop-services' },
          { type: 'start-pairing', dataDir: state.dataDir, reason: 'button' },
        );
      if (event.type === 'paired' && state.dataDir !== undefined)
        return to(
          { ...state, resume: 'running' },
          { type: 'stop-pairing' },
          { type: 'start-services', dataDir: state.dataDir },
        );
      if (event.type === 'storage-unlocked')
        return to(
          { ...state, dataDir: event.dataDir, resume: 'running' },
          { type: 'load-pairing-state', dataDir: event.dataDir },
        );
      return stay(state);
    case 'failed':
    case 'stopping':
      return stay(state);
  }
}
