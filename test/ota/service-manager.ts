/**
 * A small systemd stand-in for host tests: runs ONE service the way
 * vigil-hub.service asks systemd to (Type=notify, WatchdogSec=, Restart=on-failure,
 * RestartSec=), with a real sd_notify socket per start:
 *
 *   - READY=1 must arrive within the start timeout, else the start is killed;
 *   - after READY=1, a gap between WATCHDOG=1 pings longer than the watchdog
 *     period kills the process (SIGABRT, then SIGKILL: systemd's WatchdogSignal);
 *   - a non-zero exit or a kill is restarted after the restart delay; exit 0 stops.
 */
import { join } from 'node:path';
import { spawnProcess } from '../../hw/os/run.js';
import { NotifyListener } from '../../hw/os/sd-notify.js';

export interface ServiceRun {
  readonly n: number;
  readonly pid: number | undefined;
  /** Why it ended: its own exit, the watchdog, or no READY=1 in time. */
  why: 'running' | 'exit' | 'watchdog' | 'start-timeout' | 'stopped';
  exitCode: number | null;
  signal: string | null;
  ready: boolean;
  output: string;
}

export interface ServiceManagerOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Where the notify sockets go. */
  readonly dir: string;
  readonly watchdogMs: number;
  readonly restartMs?: number;
  readonly startTimeoutMs?: number;
  /** Stop restarting after this many starts (StartLimitBurst). Default 10. */
  readonly maxStarts?: number;
}

export class ServiceManager {
  readonly runs: ServiceRun[] = [];
  readonly #o: ServiceManagerOptions;
  #stopping = false;
  #current: { stop: (graceMs: number) => Promise<unknown> } | undefined;
  #loop: Promise<void> | undefined;
  #waiters: (() => void)[] = [];

  constructor(o: ServiceManagerOptions) {
    this.#o = o;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  #changed(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolve when `pred(runs)` holds; reject after `timeoutMs` with the runs' output. */
  async waitFor(pred: (runs: readonly ServiceRun[]) => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.runs)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`service did not reach the expected state:\n${this.dump()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  dump(): string {
    return this.runs
      .map(
        (r) =>
          `--- start ${String(r.n)} pid ${String(r.pid)}: ${r.why} exit=${String(r.exitCode)} signal=${String(r.signal)}\n${r.output.slice(-6000)}`,
      )
      .join('\n');
  }

  async #run(): Promise<void> {
    const max = this.#o.maxStarts ?? 10;
    for (let n = 1; n <= max && !this.#stopping; n++) {
      const sock = join(this.#o.dir, `notify-${String(n)}.sock`);
      const listener = new NotifyListener(sock);
      const p = spawnProcess(this.#o.command, [...this.#o.args], {
        env: {
          ...this.#o.env,
          NOTIFY_SOCKET: sock,
          WATCHDOG_USEC: String(this.#o.watchdogMs * 1000),
        },
        stdout: 'pipe',
        stderr: 'pipe',
        cwd: this.#o.dir,
      });
      const run: ServiceRun = {
        n,
        pid: p.pid,
        why: 'running',
        exitCode: null,
        signal: null,
        ready: false,
        output: '',
      };
      this.runs.push(run);
      this.#current = p;
      const onData = (d: Buffer): void => {
        run.output += d.toString();
      };
      p.child.stdout?.on('data', onData);
      p.child.stderr?.on('data', onData);
      const started = Date.now();
      let lastPing = started;
      let seen = 0;
      const k: { killed: ServiceRun['why'] | undefined } = { killed: undefined };
      const kill = (why: ServiceRun['why']): void => {
        if (k.killed !== undefined) return;
        k.killed = why;
        try {
          if (p.pid !== undefined) process.kill(p.pid, 'SIGABRT');
        } catch {
          /* already gone */
        }
        setTimeout(() => {
          try {
            if (p.pid !== undefined) process.kill(p.pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }, 3000).unref();
      };
      const timer = setInterval(() => {
        for (; seen < listener.messages.length; seen++) {
          const m = listener.messages[seen] ?? {};
          if (m.READY === '1' && !run.ready) {
            run.ready = true;
            this.#changed();
          }
          if (m.READY === '1' || m.WATCHDOG === '1') lastPing = Date.now();
        }
        const now = Date.now();
        if (!run.ready && now - started > (this.#o.startTimeoutMs ?? 90_000)) kill('start-timeout');
        if (run.ready && now - lastPing > this.#o.watchdogMs) kill('watchdog');
      }, 100);
      const exit = await p.exited;
      clearInterval(timer);
      listener.close();
      run.exitCode = exit.exitCode;
      run.signal = exit.signal;
      run.why = this.stopping() ? 'stopped' : (k.killed ?? 'exit');
      this.#current = undefined;
      this.#changed();
      if (run.why === 'exit' && exit.exitCode === 0) return; // Restart=on-failure
      await new Promise((r) => setTimeout(r, this.#o.restartMs ?? 300));
    }
  }

  /** A method, not a field read: it changes while the loop awaits. */
  stopping(): boolean {
    return this.#stopping;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#current?.stop(3000);
    await this.#loop;
  }
}
