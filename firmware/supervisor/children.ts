/**
 * Child-process supervision: each child (encoder pipeline, hostapd, dnsmasq,
 * configured extras) is restarted with exponential backoff when it exits; a
 * child that crashes `crashLoopCount` times within `crashLoopWindowMs` is in a
 * crash loop: it is left stopped, reported, and not spun forever. `stopAll()`
 * ends every child (SIGTERM, then SIGKILL) within a deadline.
 */
import { spawnProcess } from '../../hw/os/run.js';
import type { Spawned } from '../../hw/os/run.js';
import type { Logger } from '../../base/logger.js';
import { backoffDelay } from './executor.js';

export interface ChildDefinition {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

export interface RestartPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly crashLoopCount: number;
  readonly crashLoopWindowMs: number;
}

export type ChildState = 'starting' | 'running' | 'backoff' | 'crash-loop' | 'stopped';

export interface ChildStatus {
  readonly name: string;
  readonly state: ChildState;
  readonly pid: number | undefined;
  readonly restarts: number;
  readonly lastExit: { code: number | null; signal: string | null } | undefined;
}

export interface ChildEvents {
  onCrashLoop?(name: string): void;
  onRecovered?(name: string): void;
}

/** A child considered healthy after running this long resets its backoff. */
const STABLE_AFTER_MS = 10_000;

class SupervisedChild {
  readonly def: ChildDefinition;
  state: ChildState = 'stopped';
  proc: Spawned | undefined;
  restarts = 0;
  crashes: number[] = [];
  lastExit: ChildStatus['lastExit'];
  timer: NodeJS.Timeout | undefined;
  startedAt = 0;
  wanted = false;

  constructor(def: ChildDefinition) {
    this.def = def;
  }
}

export class ChildSupervisor {
  readonly #children = new Map<string, SupervisedChild>();
  readonly #policy: RestartPolicy;
  readonly #log: Logger;
  readonly #events: ChildEvents;
  readonly #now: () => number;

  constructor(
    policy: RestartPolicy,
    logger: Logger,
    events: ChildEvents = {},
    now: () => number = Date.now,
  ) {
    this.#policy = policy;
    this.#log = logger;
    this.#events = events;
    this.#now = now;
  }

  /** Start supervising a child (replaces a stopped child of the same name). */
  start(def: ChildDefinition): void {
    const existing = this.#children.get(def.name);
    if (existing?.wanted) return;
    const c = new SupervisedChild(def);
    c.wanted = true;
    this.#children.set(def.name, c);
    this.#spawn(c);
  }

  #spawn(c: SupervisedChild): void {
    c.state = 'starting';
    c.startedAt = this.#now();
    const proc = spawnProcess(c.def.command, c.def.args, {
      stdout: 'pipe',
      stderr: 'pipe',
      detached: true,
      env: { ...process.env, ...(c.def.env ?? {}) },
    });
    c.proc = proc;
    // Children's output is theirs: forward it line by line as debug logs.
    const log = this.#log.child(c.def.name);
    for (const stream of [proc.child.stdout, proc.child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (d: string) => {
        for (const line of d.split('\n')) if (line.trim()) log.debug(line.slice(0, 500));
      });
    }
    proc.child.once('spawn', () => {
      if (c.proc === proc) c.state = 'running';
      log.info('child started', { pid: proc.pid });
    });
    void proc.exited.then(({ exitCode, signal }) => {
      if (c.proc !== proc) return;
      c.proc = undefined;
      c.lastExit = { code: exitCode, signal };
      if (!c.wanted) {
        c.state = 'stopped';
        return;
      }
      this.#onCrash(c, exitCode, signal);
    });
  }

  #onCrash(c: SupervisedChild, code: number | null, signal: string | null): void {
    const now = this.#now();
    const ranFor = now - c.startedAt;
    if (ranFor >= STABLE_AFTER_MS) c.crashes = [];
    c.crashes = c.crashes.filter((t) => now - t <= this.#policy.crashLoopWindowMs);
    c.crashes.push(now);
    const log = this.#log.child(c.def.name);
    if (c.crashes.length >= this.#policy.crashLoopCount) {
      c.state = 'crash-loop';
      log.error('child is in a crash loop; not restarting', {
        crashes: c.crashes.length,
        windowMs: this.#policy.crashLoopWindowMs,
        exitCode: code,
        signal,
      });
      this.#events.onCrashLoop?.(c.def.name);
      return;
    }
    const delay = backoffDelay(c.crashes.length, this.#policy);
    c.state = 'backoff';
    log.warn('child exited; restarting', {
      exitCode: code,
      signal,
      restartInMs: delay,
      crashes: c.crashes.length,
    });
    c.timer = setTimeout(() => {
      c.timer = undefined;
      if (!c.wanted) return;
      c.restarts += 1;
      this.#spawn(c);
    }, delay);
  }

  /** Manually restart a child that was given up on (e.g. after a fix). */
  retry(name: string): boolean {
    const c = this.#children.get(name);
    if (c?.state !== 'crash-loop') return false;
    c.crashes = [];
    this.#spawn(c);
    this.#events.onRecovered?.(name);
    return true;
  }

  async stop(name: string, graceMs = 3000): Promise<void> {
    const c = this.#children.get(name);
    if (!c) return;
    c.wanted = false;
    if (c.timer) clearTimeout(c.timer);
    const p = c.proc;
    if (p) await p.stop(graceMs);
    c.state = 'stopped';
  }

  /** Stop every child: SIGTERM, SIGKILL after graceMs. */
  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all([...this.#children.keys()].map((n) => this.stop(n, graceMs)));
  }

  status(): ChildStatus[] {
    return [...this.#children.values()].map((c) => ({
      name: c.def.name,
      state: c.state,
      pid: c.proc?.pid,
      restarts: c.restarts,
      lastExit: c.lastExit,
    }));
  }
}
