/**
 * `vigil dev`: the full local run (hub with a simulated camera, relay, viewer)
 * on loopback, paired automatically. Prints the viewer URL; Ctrl-C stops it.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Command, CommandContext } from '../base/command.js';
import { UsageError } from '../base/command.js';
import { JsonLogger } from '../base/logger.js';
import type { LogLevel } from '../base/logger.js';
import { startLocalRun } from './local-run.js';

const USAGE = `
Usage: vigil dev [options]

Runs Vigil locally in development mode: the relay, a hub with a simulated camera
(a moving object triggers motion every 40 s) and the companion's browser viewer,
all on 127.0.0.1, paired automatically. Prints the viewer URL.

Options:
  --dir DIR            state for the run (default ./.vigil-dev; kept between runs)
  --relay-port N       relay port (default: any free port)
  --viewer-port N      viewer port (default 8480)
  --size WxH           simulated camera size (default 640x360)
  --fps N              simulated camera frame rate (default 15)
  --log-level LEVEL    debug|info|warn|error (default info)
  --help               show this help
`;

function port(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new UsageError(`${name} must be a port number, got "${v}"`);
  return n;
}

async function run(ctx: CommandContext): Promise<number> {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...ctx.argv],
      options: {
        dir: { type: 'string' },
        'relay-port': { type: 'string' },
        'viewer-port': { type: 'string' },
        size: { type: 'string' },
        fps: { type: 'string' },
        'log-level': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const level = values['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level))
    throw new UsageError(`--log-level must be debug, info, warn or error`);
  let width: number | undefined;
  let height: number | undefined;
  if (values.size !== undefined) {
    const m = /^(\d{2,4})x(\d{2,4})$/.exec(values.size);
    if (!m) throw new UsageError(`--size must look like 640x360, got "${values.size}"`);
    width = Number(m[1]);
    height = Number(m[2]);
  }
  const fps = values.fps === undefined ? undefined : Number(values.fps);
  if (fps !== undefined && (!Number.isInteger(fps) || fps < 1 || fps > 60))
    throw new UsageError('--fps must be 1..60');
  const logger = new JsonLogger('vigil', { level: level as LogLevel });
  const relayPort = port(values['relay-port'], '--relay-port');
  const lr = await startLocalRun({
    dir: resolve(values.dir ?? '.vigil-dev'),
    logger,
    viewerPort: port(values['viewer-port'], '--viewer-port') ?? 8480,
    ...(relayPort !== undefined ? { relayPort } : {}),
    ...(width !== undefined && height !== undefined ? { width, height } : {}),
    ...(fps !== undefined ? { fps } : {}),
  });
  ctx.stdout(
    `\nVigil is running (development mode).\n  viewer: ${lr.viewerUrl}\n  relay:  ${lr.relayUrl}\nPress Ctrl-C to stop.\n\n`,
  );
  await new Promise<void>((done) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await lr.stop();
  return 0;
}

export const command: Command = {
  name: 'dev',
  summary: 'run a full local hub, relay and viewer',
  usage: USAGE,
  run,
};
