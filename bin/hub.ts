/**
 * `vigil hub`: the supervisor process systemd runs (Type=notify).
 *
 *   vigil hub [--config PATH] [--root DIR]
 *   vigil hub status [--root DIR]
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Command, CommandContext } from '../base/command.js';
import { UsageError } from '../base/command.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { SdNotify } from '../hw/os/sd-notify.js';
import { loadConfig } from '../firmware/config/config.js';
import { JsonLogger } from '../base/logger.js';
import { DevServices } from '../firmware/supervisor/dev-services.js';
import { Hub } from '../firmware/supervisor/hub.js';
import type { HubServices } from '../firmware/supervisor/hub.js';
import { createProductionServices } from '../firmware/supervisor/production-services.js';
import { openPanel } from '../firmware/supervisor/panel.js';
import { OnoffGpio } from '../hw/gpio/gpio.js';

const USAGE = `
Usage: vigil hub [--config PATH] [--root DIR]
       vigil hub status [--root DIR]

Runs the Vigil supervisor: unlocks storage, opens the pairing window when no
phone is paired, runs the camera, uplink and update services, and talks to
systemd (READY=1, STATUS=, WATCHDOG=1).

Options:
  --config PATH  configuration file (default /etc/vigil/config.json, or $VIGIL_CONFIG)
  --root DIR     prefix for every host path (tests; default / or $VIGIL_ROOT)
  --help         show this help
`;

function parse(argv: readonly string[]): { config?: string; root?: string; rest: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { config: { type: 'string' }, root: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    return {
      ...(values.config !== undefined ? { config: values.config } : {}),
      ...(values.root !== undefined ? { root: values.root } : {}),
      rest: positionals,
    };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function status(paths: HostPaths, ctx: CommandContext): Promise<number> {
  try {
    ctx.stdout(await readFile(paths.host('/run/vigil/status.json'), 'utf8'));
    return 0;
  } catch {
    ctx.stderr('vigil hub status: no running hub (no /run/vigil/status.json)\n');
    return 1;
  }
}

async function run(ctx: CommandContext): Promise<number> {
  const args = parse(ctx.argv);
  const paths = new HostPaths(args.root ?? ctx.env.VIGIL_ROOT ?? '/');
  if (args.rest[0] === 'status') return status(paths, ctx);
  if (args.rest.length > 0) throw new UsageError(`unexpected argument "${args.rest[0] ?? ''}"`);
  const configPath = args.config ?? ctx.env.VIGIL_CONFIG ?? paths.configFile;
  const config = await loadConfig(configPath);
  const logger = new JsonLogger('vigil', { level: config.log.level });
  const dataDir = paths.host(config.storage.dataDir);
  // button + status LED (firmware/supervisor/panel.ts; production only)
  const panel =
    config.mode === 'production'
      ? await openPanel({
          config: config.gpio,
          backend: new OnoffGpio(paths),
          paths,
          logger: logger.child('panel'),
        })
      : undefined;
  const base: HubServices =
    config.mode === 'development'
      ? new DevServices({ dataDir, logger: logger.child('dev') })
      : await createProductionServices({
          config,
          paths,
          logger,
          onRecording: (r) => {
            panel?.setRecording(r);
          },
        });
  // The OTA agent (bin/hub-ota.ts): poll loop while running, trial starts, restarts.
  const { withOta } = await import('./hub-ota.js');
  const services = withOta(base, {
    config,
    paths,
    logger,
    env: ctx.env,
    stop: (code) => {
      hub.stop(code);
    },
  });
  const hub = new Hub({
    config,
    logger,
    notifier: SdNotify.fromEnv(ctx.env),
    services,
    statusFile: paths.host('/run/vigil/status.json'),
    onState: (s) => {
      panel?.onState(s);
    },
  });
  panel?.attach((e) => {
    hub.executor.dispatch(e);
  });
  const onSignal = (sig: NodeJS.Signals): void => {
    logger.info('signal received; stopping', { signal: sig });
    hub.stop(0);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    return await hub.run();
  } finally {
    panel?.close();
  }
}

export const command: Command = {
  name: 'hub',
  summary: 'run the hub supervisor',
  usage: USAGE,
  run,
};
