/**
 * `vigil dev`: the full local run (hub with a simulated camera, relay, viewer)
 * on loopback, paired automatically. Prints where everything is once the run is
 * up (and again on Enter or SIGUSR1); Ctrl-C stops it.
 */
import { resolve } from 'node:path';
import type { Command, CommandContext } from '../base/command.js';
import {
  LOG_LEVELS,
  UsageError,
  choiceOption,
  intOption,
  parseOptions,
  portOption,
} from '../base/command.js';
import { chooseLogFormat, JsonLogger } from '../base/logger.js';
import { DEFAULT_FPS, DEFAULT_SIZE, startLocalRun } from './local-run.js';
import type { LocalRun } from './local-run.js';

const SIZE = `${DEFAULT_SIZE.width}x${DEFAULT_SIZE.height}`;

const USAGE = `
Usage: vigil dev [options]

Runs Vigil locally in development mode: the relay, a hub with a simulated camera
(a moving object triggers motion every 40 s) and the companion's browser viewer,
all on 127.0.0.1, paired automatically. When everything is up it prints the
viewer URL and the phone's state directory; press Enter (or send SIGUSR1) to
print them again. Ctrl-C stops the run.

The state directory keeps the hub, relay and phone between runs, with the relay
port and the viewer's access token, so the same URL works after a restart.

Options:
  --dir DIR            state for the run (default ./.vigil-dev; kept between runs)
  --relay-port N       relay port (default: the one saved in DIR, else a free port)
  --viewer-port N      viewer port (default 8480; 0 picks a free port)
  --pairing-port N     also serve the real pairing frame server on 127.0.0.1:N
                       (0 picks a free port), so a client written from
                       docs/protocol.md can pair with this hub; the label
                       payload (VIGIL1:...) is in DIR/hub/label.txt
  --size WxH           simulated camera size (default ${SIZE}; offered: 1920x1080,
                       1280x720, 640x480, 320x240, 160x120)
  --fps N              simulated camera frame rate (default ${DEFAULT_FPS})
  --audio              record audio too: the simulated camera adds a 440 Hz tone,
                       encoded AAC into clips and live view (default: video only)
  --log-level LEVEL    debug|info|warn|error (default info)
  --log-format FORMAT  human|json (default: human on a terminal, json otherwise;
                       also VIGIL_LOG_FORMAT)
  --help               show this help

A run that cannot start (a busy port, ...) exits 1 with one line.
`;

/** What the user needs to reach the run: printed last at start-up, and on demand. */
function banner(lr: LocalRun): string {
  return [
    '',
    'Vigil is running (development mode).',
    `  viewer:  ${lr.viewerUrl}`,
    // one writer at a time for the phone's MLS state: the CLI only once this run has stopped
    `  phone:   ${lr.appDir}   (vigil app ... --dir this, once the run is stopped)`,
    `  relay:   ${lr.relayUrl}`,
    ...(lr.pairing
      ? [`  pairing: ${lr.pairing.host}:${lr.pairing.port}   (label: ${lr.pairing.labelFile})`]
      : []),
    'Press Enter to show this again, Ctrl-C to stop.',
    '',
    '',
  ].join('\n');
}

async function run(ctx: CommandContext): Promise<number> {
  const { values } = parseOptions(ctx.argv, {
    dir: { type: 'string' },
    'relay-port': { type: 'string' },
    'viewer-port': { type: 'string' },
    'pairing-port': { type: 'string' },
    size: { type: 'string' },
    fps: { type: 'string' },
    audio: { type: 'boolean' },
    'log-level': { type: 'string' },
    'log-format': { type: 'string' },
  });
  const level = choiceOption(values['log-level'], '--log-level', LOG_LEVELS) ?? 'info';
  const format = chooseLogFormat(values['log-format'], ctx.env, process.stdout.isTTY);
  if (format === undefined)
    throw new UsageError(
      `--log-format (or VIGIL_LOG_FORMAT) must be human or json, got "${values['log-format'] ?? ctx.env.VIGIL_LOG_FORMAT ?? ''}"`,
    );
  let width: number | undefined;
  let height: number | undefined;
  if (values.size !== undefined) {
    const m = /^(\d{2,4})x(\d{2,4})$/.exec(values.size);
    if (!m) throw new UsageError(`--size must look like ${SIZE}, got "${values.size}"`);
    width = Number(m[1]);
    height = Number(m[2]);
  }
  const fps = intOption(values.fps, '--fps', 1, 60);
  const relayPort = portOption(values['relay-port'], '--relay-port', true);
  const viewerPort = portOption(values['viewer-port'], '--viewer-port', true) ?? 8480;
  const pairingPort = portOption(values['pairing-port'], '--pairing-port', true);
  const logger = new JsonLogger('vigil', { level, format });

  // A stop asked for while starting up is honoured as soon as the run is up.
  let stopRequested = false;
  const stopping = (): boolean => stopRequested; // read through a call: set by a signal
  let wake = (): void => undefined;
  const onStop = (): void => {
    if (stopRequested) {
      ctx.stderr('vigil dev: stopping now (second interrupt)\n');
      process.exit(130);
    }
    stopRequested = true;
    ctx.stdout('\nStopping Vigil (press Ctrl-C again to force)...\n');
    wake();
  };
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
  try {
    const lr = await startLocalRun({
      dir: resolve(values.dir ?? '.vigil-dev'),
      logger,
      viewerPort,
      ...(relayPort !== undefined ? { relayPort } : {}),
      ...(width !== undefined && height !== undefined ? { width, height } : {}),
      ...(fps !== undefined ? { fps } : {}),
      ...(pairingPort !== undefined ? { pairingPort } : {}),
      ...(values.audio === true ? { audio: true } : {}),
    });
    const show = (): void => {
      ctx.stdout(banner(lr));
    };
    const stdin = process.stdin.isTTY ? process.stdin : undefined;
    if (!stopping()) {
      show();
      process.on('SIGUSR1', show);
      stdin?.on('data', show); // a line typed on the terminal (Enter)
      await new Promise<void>((done) => {
        wake = done;
      });
      process.off('SIGUSR1', show);
      stdin?.off('data', show);
      stdin?.pause(); // let the process exit
    }
    const started = Date.now();
    await lr.stop();
    ctx.stdout(`Vigil stopped (${((Date.now() - started) / 1000).toFixed(1)} s).\n`);
    return 0;
  } finally {
    process.off('SIGINT', onStop);
    process.off('SIGTERM', onStop);
  }
}

export const command: Command = {
  name: 'dev',
  summary: 'run a full local hub, relay and viewer',
  usage: USAGE,
  badValueExamples: [
    ['--viewer-port', 'abc'],
    ['--fps', '0'],
    ['--pairing-port', '70000'],
    ['--size', 'big'],
    ['--log-format', 'xml'],
  ],
  run,
};
