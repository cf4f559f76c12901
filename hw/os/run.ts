/**
 * The single process runner. Every external program Vigil starts goes through
 * here: argv arrays only (never a shell), a timeout and an AbortSignal on every
 * call, typed CommandError on failure, and secrets through stdin only.
 *
 * An eslint `no-restricted-imports` rule keeps node:child_process out of every
 * other file.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { VigilError } from '../../base/errors.js';

const STDERR_TAIL_BYTES = 4096;
const DEFAULT_TIMEOUT_MS = 60_000;

export interface RunOptions {
  /** Kill the process (SIGKILL after SIGTERM grace) after this many ms. Default 60 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Bytes written to the child's stdin (then closed). The only way to pass secrets. */
  readonly stdin?: string | Uint8Array;
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Exit codes treated as success (default [0]). */
  readonly okExitCodes?: readonly number[];
  /** Cap on captured stdout (bytes); more is an error. Default 64 MiB. */
  readonly maxStdoutBytes?: number;
}

export interface RunResult {
  readonly stdout: Buffer;
  readonly stderr: string;
  readonly exitCode: number;
}

export type CommandFailure = 'exit' | 'timeout' | 'aborted' | 'spawn' | 'signal' | 'overflow';

export class CommandError extends VigilError {
  readonly command: string;
  readonly args: readonly string[];
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Last few KiB of stderr: enough to explain, bounded so logs stay small. */
  readonly stderr: string;
  readonly failure: CommandFailure;

  constructor(init: {
    command: string;
    args: readonly string[];
    exitCode: number | null;
    signal: NodeJS.Signals | null;
    stderr: string;
    failure: CommandFailure;
    cause?: unknown;
  }) {
    const tail = init.stderr.trim().split('\n').slice(-3).join(' | ');
    const what =
      init.failure === 'exit'
        ? `exited with code ${String(init.exitCode)}`
        : init.failure === 'signal'
          ? `was killed by ${String(init.signal)}`
          : init.failure === 'timeout'
            ? 'timed out'
            : init.failure === 'aborted'
              ? 'was aborted'
              : init.failure === 'overflow'
                ? 'produced too much output'
                : 'could not be started';
    super('ECOMMAND', `${init.command} ${what}${tail ? `: ${tail}` : ''}`, { cause: init.cause });
    this.name = 'CommandError';
    this.command = init.command;
    this.args = init.args;
    this.exitCode = init.exitCode;
    this.signal = init.signal;
    this.stderr = init.stderr;
    this.failure = init.failure;
  }
}

function tailOf(chunks: Buffer[]): string {
  const all = Buffer.concat(chunks);
  return all.subarray(Math.max(0, all.length - STDERR_TAIL_BYTES)).toString('utf8');
}

function envOf(env: RunOptions['env']): NodeJS.ProcessEnv | undefined {
  if (!env) return undefined;
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Run a program to completion and capture its output. */
export function run(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxStdout = opts.maxStdoutBytes ?? 64 * 1024 * 1024;
  const ok = opts.okExitCodes ?? [0];
  return new Promise<RunResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(
        new CommandError({
          command,
          args,
          exitCode: null,
          signal: null,
          stderr: '',
          failure: 'aborted',
        }),
      );
      return;
    }
    const env = envOf(opts.env);
    const child = nodeSpawn(command, [...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      shell: false,
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      ...(env !== undefined ? { env } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let failure: CommandFailure | null = null;
    let spawnError: unknown;
    const kill = (why: CommandFailure): void => {
      if (failure === null) failure = why;
      terminate(child);
    };
    const timer = setTimeout(() => {
      kill('timeout');
    }, timeoutMs);
    const onAbort = (): void => {
      kill('aborted');
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > maxStdout) kill('overflow');
      else out.push(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      err.push(c);
      // keep memory bounded: only the tail matters
      if (err.length > 64) err.splice(0, err.length - 16);
    });
    child.stdin.on('error', () => {
      /* child may exit before reading stdin; the exit status tells the story */
    });
    if (opts.stdin !== undefined) child.stdin.end(opts.stdin);
    else child.stdin.end();
    child.on('error', (e) => {
      spawnError = e;
      if (failure === null) failure = 'spawn';
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const stderr = tailOf(err);
      if (failure === null && code !== null && ok.includes(code)) {
        resolve({ stdout: Buffer.concat(out), stderr, exitCode: code });
        return;
      }
      const f: CommandFailure = failure ?? (code === null ? 'signal' : 'exit');
      reject(
        new CommandError({
          command,
          args,
          exitCode: code,
          signal: sig,
          stderr,
          failure: f,
          cause: spawnError,
        }),
      );
    });
  });
}

/** SIGTERM, then SIGKILL after a grace period. */
function terminate(child: ChildProcess, graceMs = 2000): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, graceMs);
  t.unref();
  child.once('exit', () => {
    clearTimeout(t);
  });
}

export interface SpawnOptions {
  readonly signal?: AbortSignal;
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly stdin?: 'pipe' | 'ignore';
  readonly stdout?: 'pipe' | 'ignore' | 'inherit';
  readonly stderr?: 'pipe' | 'ignore' | 'inherit';
  /** Start the child in its own process group so it and its descendants stop together. */
  readonly detached?: boolean;
}

export interface Spawned {
  readonly pid: number | undefined;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, SIGKILL after graceMs; resolves once it has exited. */
  stop(graceMs?: number): Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Start a long-running program (hostapd, ffmpeg, a child service). The caller
 * owns its lifetime; `stop()` terminates it with a grace period.
 */
export function spawnProcess(
  command: string,
  args: readonly string[],
  opts: SpawnOptions = {},
): Spawned {
  const env = envOf(opts.env);
  const child = nodeSpawn(command, [...args], {
    shell: false,
    stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'pipe', opts.stderr ?? 'pipe'],
    detached: opts.detached ?? false,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(env !== undefined ? { env } : {}),
  });
  const exited = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>(
    (resolve) => {
      let done = false;
      child.once('error', () => {
        // spawn failure (ENOENT...): Node emits 'error' and 'close' but no 'exit'
        if (done || child.pid !== undefined) return;
        done = true;
        resolve({ exitCode: -1, signal: null });
      });
      child.once('exit', (exitCode, signal) => {
        if (done) return;
        done = true;
        resolve({ exitCode, signal });
      });
    },
  );
  const onAbort = (): void => {
    terminate(child);
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  void exited.then(() => opts.signal?.removeEventListener('abort', onAbort));
  return {
    pid: child.pid,
    child,
    exited,
    stop: async (graceMs = 2000) => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        if (opts.detached === true) {
          try {
            process.kill(-child.pid, 'SIGTERM');
          } catch {
            child.kill('SIGTERM');
          }
          const t = setTimeout(() => {
            try {
              if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
            } catch {
              /* already gone */
            }
          }, graceMs);
          t.unref();
          void exited.then(() => {
            clearTimeout(t);
          });
        } else terminate(child, graceMs);
      }
      return exited;
    },
  };
}

/** Absolute path of `command` found on PATH, or null. */
export async function which(command: string): Promise<string | null> {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, command));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      /* try the next one */
    }
  }
  return null;
}
