/**
 * The shape of a `vigil` subcommand. bin/cli.ts registers and loads the
 * commands; each feature's cli.ts exports `command: Command`.
 */
import { VigilError } from './errors.js';

export interface CommandContext {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  /** Returns the process exit code. */
  run(ctx: CommandContext): Promise<number>;
}

/** Thrown for bad command-line input: printed as one line, exit code 2. */
export class UsageError extends VigilError {
  constructor(message: string) {
    super('EUSAGE', message);
    this.name = 'UsageError';
  }
}
