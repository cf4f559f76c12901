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
import { UsageError } from '../base/command.js';

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
};

export function topHelp(version: string): string {
  const lines = [
    `vigil ${version} - private end-to-end encrypted camera hub`,
    '',
    'Usage: vigil <command> [options]',
    '',
    'Commands:',
  ];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push(
    '',
    'Run `vigil <command> --help` for the options of a command.',
    'Global: --version, --help',
  );
  return lines.join('\n');
}

export async function main(
  argv: readonly string[],
  version: string,
  ctx: Omit<CommandContext, 'argv'>,
): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    ctx.stdout(topHelp(version) + '\n');
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === '-v') {
    ctx.stdout(`${version}\n`);
    return 0;
  }
  const entry = COMMANDS[first];
  if (!entry) {
    ctx.stderr(`vigil: unknown command "${first}" (see vigil --help)\n`);
    return 2;
  }
  try {
    const { command } = await entry.load();
    if (rest.includes('--help') || rest.includes('-h')) {
      ctx.stdout(`${command.usage.trim()}\n`);
      return 0;
    }
    return await command.run({ ...ctx, argv: rest });
  } catch (err) {
    if (err instanceof UsageError) {
      ctx.stderr(`vigil ${first}: ${err.message}\n`);
      return 2;
    }
    ctx.stderr(`vigil ${first}: ${reasonOf(err)}\n`);
    return 1;
  }
}
