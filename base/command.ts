/**
 * The shape of a `vigil` command and the one command-line convention every
 * command follows. bin/cli.ts registers and loads the commands; each feature's
 * cli.ts exports `command: Command`.
 *
 * The convention (docs/architecture.md, "Command line"):
 * - `vigil <command> [<subcommand>] [options]`; `--help` on any of them prints
 *   that level's usage followed by the exit codes;
 * - bad input is a `UsageError`: bin/cli.ts prints it as ONE line,
 *   `vigil <command>[ <subcommand>]: <what is wrong> (see vigil <command>[ <subcommand>] --help)`,
 *   and exits 2; the option parser and the value checkers below word the
 *   common mistakes the same way everywhere;
 * - exit codes: 0 success, 1 failure (the reason on one line), 2 bad usage;
 *   a command may add its own above 2 (`storage`: 3 locked);
 * - status and list subcommands print for people by default and take `--json`.
 */
import { parseArgs } from 'node:util';
import { VigilError } from './errors.js';

export interface CommandContext {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Is stderr a terminal (progress bars, colours)? Absent: not a terminal. */
  readonly stderrIsTTY?: boolean;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** The command's help text (without the exit codes: bin/cli.ts appends those). */
  readonly usage: string;
  /** Help per subcommand: `vigil <name> <sub> --help` prints it instead of `usage`. */
  readonly subcommands?: Readonly<Record<string, string>>;
  /** Exit codes above 2, e.g. `3 locked`. */
  readonly moreExitCodes?: string;
  /**
   * Argument lists (after the command name) that each carry one bad option value.
   * The convention test (test/bin/cli.test.ts) runs every one and
   * expects one line on stderr and exit code 2, before the command does anything.
   */
  readonly badValueExamples: readonly (readonly string[])[];
  /** Returns the process exit code. */
  run(ctx: CommandContext): Promise<number>;
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The exit-code paragraph every `--help` ends with. */
export function exitCodesHelp(more?: string): string {
  return `Exit codes: 0 success, 1 failure (the reason on one line), 2 bad usage${more !== undefined ? `, ${more}` : ''}.`;
}

/** Thrown for bad command-line input: printed as one line, exit code 2. */
export class UsageError extends VigilError {
  constructor(message: string) {
    super('EUSAGE', message);
    this.name = 'UsageError';
  }
}

/** The option name inside one of node's parseArgs messages ("Unknown option '--x'. ..."). */
function quoted(message: string): string {
  const m = /'(-[^' ]*)/.exec(message) ?? /'([^']*)'/.exec(message);
  return m?.[1] ?? '?';
}

/**
 * node:util parseArgs in strict mode, with its errors reworded to the
 * convention's one-liners (node's own carry a long tail about `--`).
 */
export type OptionsSpec = Readonly<
  Record<string, { readonly type: 'string' | 'boolean'; readonly short?: string }>
>;

export type OptionValues<T extends OptionsSpec> = {
  [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string;
};

export function parseOptions<const T extends OptionsSpec>(
  argv: readonly string[],
  options: T,
  allowPositionals = false,
): { values: OptionValues<T>; positionals: string[] } {
  try {
    const r = parseArgs({ args: [...argv], options, strict: true, allowPositionals });
    return r;
  } catch (e) {
    throw usageErrorOf(e);
  }
}

/** Translate a parseArgs error; anything else becomes a usage error with its message. */
export function usageErrorOf(e: unknown): UsageError {
  const code = (e as { code?: unknown }).code;
  const message = e instanceof Error ? e.message : String(e);
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${quoted(message)}`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const opt = quoted(message);
      return new UsageError(
        /does not take an argument/.test(message)
          ? `option ${opt} takes no value`
          : `option ${opt} needs a value`,
      );
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument "${/'([^']*)'/.exec(message)?.[1] ?? '?'}"`);
    default:
      return new UsageError(message.split('\n')[0] ?? message);
  }
}

/** A whole number option within [min, max]; undefined when absent. */
export function intOption(
  raw: string | undefined,
  flag: string,
  min: number,
  max: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^-?[0-9]+$/.test(raw) || n < min || n > max)
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${raw}"`);
  return n;
}

/** A TCP port option (0 = any free port only when `allowZero`). */
export function portOption(
  raw: string | undefined,
  flag: string,
  allowZero = false,
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^[0-9]{1,5}$/.test(raw) || n > 65535 || (n === 0 && !allowZero))
    throw new UsageError(
      `${flag} must be a port number (${allowZero ? '0' : '1'}..65535), got "${raw}"`,
    );
  return n;
}

/** A positive number of seconds (fractions allowed). */
export function secondsOption(raw: string | undefined, flag: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`${flag} must be a positive number of seconds, got "${raw}"`);
  return n;
}

/** One of a fixed set of words. */
export function choiceOption<C extends string>(
  raw: string | undefined,
  flag: string,
  choices: readonly C[],
): C | undefined {
  if (raw === undefined) return undefined;
  if (!(choices as readonly string[]).includes(raw))
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got "${raw}"`);
  return raw as C;
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** The subcommand word was missing or unknown. */
export function subcommandError(sub: string | undefined, known: readonly string[]): UsageError {
  if (sub === undefined) return new UsageError(`missing subcommand (${known.join(', ')})`);
  if (sub.startsWith('-')) return new UsageError(`unknown option ${sub}`);
  return new UsageError(`unknown subcommand "${sub}" (${known.join(', ')})`);
}
