/**
 * The `vigil` command: one binary, subcommands registered here. Each
 * subcommand lives in its own module and is loaded lazily, so `vigil relay`
 * never pays for the MLS or camera code and a missing optional dependency only
 * affects the command that needs it.
 *
 * A command module exports `command: Command`.
 */
import { reasonOf } from '../base/errors.js';
import type { Command, CommandContext } from '../base/command.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, exitCodesHelp } from '../base/command.js';

type Loader = () => Promise<{ command: Command }>;

export const COMMANDS: Readonly<Record<string, { summary: string; load: Loader }>> = {
  hub: { summary: 'run the hub supervisor', load: () => import('./hub.js') },
  dev: {
    summary: 'run a full local hub, relay and viewer with simulated hardware',
    load: () => import('../dev/cli.js'),
  },
  factory: {
    summary: 'factory provisioning: device identities and QR labels',
    load: () => import('../provisioning/cli.js'),
  },
  relay: { summary: 'run the untrusted ciphertext relay', load: () => import('../relay/cli.js') },
  app: { summary: 'companion: pair, list, fetch, live, view', load: () => import('../app/cli.js') },
  ota: {
    summary: 'signed update channel: init-repo, release, agent',
    load: () => import('../ota/cli.js'),
  },
  image: { summary: 'build and provision SD card images', load: () => import('../image/cli.js') },
  storage: {
    summary: 'data partition: unlock, recovery, header backup',
    load: () => import('../firmware/storage/cli.js'),
  },
  doctor: {
    summary: 'check this device: camera, encoder, keys, Wi-Fi, storage, services',
    load: () => import('./doctor.js'),
  },
};

export function topHelp(version: string): string {
  const lines = [
    `vigil ${version} - private end-to-end encrypted camera hub`,
    '',
    'Usage: vigil <command> [<subcommand>] [options]',
    '',
    'Commands:',
  ];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push(
    '',
    'Run `vigil <command> --help` (or `vigil <command> <subcommand> --help`) for the options.',
    'Global: --version, --help',
    '',
    exitCodesHelp(),
  );
  return lines.join('\n');
}

/** Errors are printed as one line: a message that spans lines is joined. */
function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, '; ');
}

/** The help of `vigil <command> [<subcommand>]`, ending with the exit codes. */
export function helpOf(command: Command, sub: string | undefined): string {
  const text = (sub !== undefined ? command.subcommands?.[sub] : undefined) ?? command.usage;
  return `${text.trim()}\n\n${exitCodesHelp(command.moreExitCodes)}\n`;
}

export async function main(
  argv: readonly string[],
  version: string,
  ctx: Omit<CommandContext, 'argv'>,
): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    ctx.stdout(topHelp(version) + '\n');
    return first === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (first === '--version' || first === '-v') {
    ctx.stdout(`${version}\n`);
    return EXIT_OK;
  }
  const entry = COMMANDS[first];
  if (!entry) {
    ctx.stderr(`vigil: unknown command "${first}" (see vigil --help)\n`);
    return EXIT_USAGE;
  }
  let where = first;
  try {
    const { command } = await entry.load();
    const sub =
      rest[0] !== undefined && command.subcommands?.[rest[0]] !== undefined ? rest[0] : undefined;
    if (sub !== undefined) where = `${first} ${sub}`;
    const end = rest.indexOf('--');
    const options = end === -1 ? rest : rest.slice(0, end);
    if (options.includes('--help') || options.includes('-h')) {
      ctx.stdout(helpOf(command, sub));
      return EXIT_OK;
    }
    return await command.run({ ...ctx, argv: rest });
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.stderr(`vigil ${where}: ${oneLine(err.message)} (see vigil ${where} --help)\n`);
      return EXIT_USAGE;
    }
    ctx.stderr(`vigil ${where}: ${oneLine(reasonOf(err))}\n`);
    return EXIT_FAILED;
  }
}
