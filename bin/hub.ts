/**
 * `vigil hub`: the supervisor process systemd runs (Type=notify).
 *
 *   vigil hub [--config PATH] [--root DIR] [--log-format human|json]
 *   vigil hub status [--root DIR | --dir DEVDIR] [--json]
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command, CommandContext } from '../base/command.js';
import { UsageError, choiceOption, parseOptions, subcommandError } from '../base/command.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { SdNotify } from '../hw/os/sd-notify.js';
import { loadConfig } from '../firmware/config/config.js';
import { JsonLogger, LOG_FORMATS, chooseLogFormat } from '../base/logger.js';
import { DevServices } from '../firmware/supervisor/dev-services.js';
import { Hub } from '../firmware/supervisor/hub.js';
import type { HubServices } from '../firmware/supervisor/hub.js';
import { createProductionServices } from '../firmware/supervisor/production-services.js';
import { openPanel } from '../firmware/supervisor/panel.js';
import { OnoffGpio } from '../hw/gpio/gpio.js';

const USAGE = `
Usage: vigil hub [--config PATH] [--root DIR] [--log-format human|json]
       vigil hub status [--root DIR | --dir DEVDIR] [--json]

Runs the Vigil supervisor: unlocks storage, opens the pairing window when no
phone is paired, runs the camera, uplink and update services, and talks to
systemd (READY=1, STATUS=, WATCHDOG=1).

Options:
  --config PATH        configuration file (default /etc/vigil/config.json, or $VIGIL_CONFIG)
  --root DIR           prefix for every host path (tests; default / or $VIGIL_ROOT)
  --log-format FORMAT  human|json (default: human on a terminal, json otherwise, so
                       journald gets JSON lines; also VIGIL_LOG_FORMAT)
  --help               show this help

Subcommands:
  status               is the hub running, and in which state (see vigil hub status --help)
`;

const STATUS_USAGE = `
Usage: vigil hub status [--root DIR | --dir DEVDIR] [--json]

Shows the running hub's state from its status file: the device's
/run/vigil/status.json, else the local run's (./.vigil-dev, see vigil dev).
A status file whose process is gone is reported as "not running".

Options:
  --root DIR     prefix for every host path (default / or $VIGIL_ROOT)
  --dir DEVDIR   the local run's state directory (vigil dev --dir; default ./.vigil-dev)
  --json         the status file's content, as JSON (with "running")
  --help         show this help
`;

/** Exit code of `vigil hub status` when no hub is running. */
export const EXIT_NOT_RUNNING = 3;

interface StatusFile {
  readonly state?: unknown;
  readonly summary?: unknown;
  readonly since?: unknown;
  readonly pid?: unknown;
  readonly children?: unknown;
  readonly services?: unknown;
}

/** Is a process with this id alive? (EPERM: it exists, owned by someone else.) */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Where a hub's status file may be, in the order they are tried. */
export function statusCandidates(
  o: { root?: string | undefined; dir?: string | undefined },
  env: NodeJS.ProcessEnv,
  cwd: string,
): string[] {
  if (o.dir !== undefined) return [join(resolve(cwd, o.dir), 'hub', 'run', 'status.json')];
  const device = new HostPaths(o.root ?? env.VIGIL_ROOT ?? '/').host('/run/vigil/status.json');
  if (o.root !== undefined) return [device];
  return [device, join(cwd, '.vigil-dev', 'hub', 'run', 'status.json')];
}

/**
 * The relay in use and the state of the meeting at it (services.relay of the status file):
 * `<url> (<source>), last contact <time|never>[; meeting <state>, <n> failure(s), next try <time>: <error>]`.
 */
export function relayLine(services: unknown): string | undefined {
  const r = (services as { relay?: unknown } | undefined)?.relay as
    | {
        url?: unknown;
        source?: unknown;
        lastContact?: unknown;
        meeting?: {
          state?: unknown;
          failures?: unknown;
          nextAttemptAt?: unknown;
          lastError?: unknown;
        };
      }
    | undefined;
  if (r === undefined) return undefined;
  const parts = [
    `${typeof r.url === 'string' ? r.url : 'none'}${typeof r.source === 'string' ? ` (${r.source})` : ''}`,
    `last contact ${typeof r.lastContact === 'string' ? r.lastContact : 'never'}`,
  ];
  const m = r.meeting;
  if (m !== undefined && m.state !== 'met') {
    let line = `meeting ${String(m.state)}, ${typeof m.failures === 'number' ? m.failures : 0} failure(s)`;
    if (typeof m.nextAttemptAt === 'string') line += `, next try ${m.nextAttemptAt}`;
    if (typeof m.lastError === 'string') line += `: ${m.lastError}`;
    parts.push(line);
  }
  return parts.join('; ');
}

/**
 * The OS line of `vigil hub status` (services.ota.os of the status file):
 * `<version>, updates on|off[: why][; last <kind> <version>]`.
 */
export function osLine(services: unknown): string | undefined {
  const ota = (services as { ota?: unknown } | undefined)?.ota as { os?: unknown } | undefined;
  const os = ota?.os as
    { version?: unknown; enabled?: unknown; note?: unknown; last?: unknown } | undefined;
  if (os === undefined) return undefined;
  let line = `${typeof os.version === 'string' ? os.version : '?'}, updates ${os.enabled === true ? 'on' : 'off'}`;
  if (os.enabled !== true && typeof os.note === 'string')
    line += ` (${os.note.replace(/^OS updates off:? ?/, '').replace(/^\((.*)\)$/, '$1')})`;
  const last = os.last as { kind?: unknown; version?: unknown } | undefined;
  if (last !== undefined && typeof last.kind === 'string')
    line += `; last ${last.kind}${typeof last.version === 'string' ? ` ${last.version}` : ''}`;
  return line;
}

async function status(ctx: CommandContext, argv: readonly string[]): Promise<number> {
  const { values } = parseOptions(argv, {
    root: { type: 'string' },
    dir: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.root !== undefined && values.dir !== undefined)
    throw new UsageError('give --root or --dir, not both');
  const candidates = statusCandidates(values, ctx.env, process.cwd());
  let file: string | undefined;
  let body: StatusFile | undefined;
  for (const c of candidates) {
    const text = await readFile(c, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    file = c;
    try {
      body = JSON.parse(text) as StatusFile;
    } catch {
      body = {};
    }
    break;
  }
  const json = values.json === true;
  if (file === undefined || body === undefined) {
    if (json) ctx.stdout(`${JSON.stringify({ running: false, statusFile: null })}\n`);
    else ctx.stdout(`not running (no status file: ${candidates.join(', ')})\n`);
    return EXIT_NOT_RUNNING;
  }
  const pid = typeof body.pid === 'number' ? body.pid : undefined;
  const running = pid !== undefined && processAlive(pid) && body.state !== 'stopped';
  if (json) {
    ctx.stdout(`${JSON.stringify({ running, statusFile: file, ...body }, null, 2)}\n`);
    return running ? 0 : EXIT_NOT_RUNNING;
  }
  if (!running) {
    ctx.stdout(
      `not running (stale status file ${file}${pid !== undefined ? `: process ${pid} is gone` : ''})\n`,
    );
    return EXIT_NOT_RUNNING;
  }
  const lines = [
    `hub:      ${String(body.state)} (pid ${pid}, since ${String(body.since)})`,
    `summary:  ${String(body.summary)}`,
  ];
  if (Array.isArray(body.children))
    for (const c of body.children as { name?: unknown; state?: unknown; restarts?: unknown }[])
      lines.push(
        `child:    ${String(c.name)} ${String(c.state)}, ${typeof c.restarts === 'number' ? c.restarts : 0} restart(s)`,
      );
  const relay = relayLine(body.services);
  if (relay !== undefined) lines.push(`relay:    ${relay}`);
  const privacy = (body.services as { privacy?: { estimate?: unknown } } | undefined)?.privacy;
  if (typeof privacy?.estimate === 'string') lines.push(`privacy:  ${privacy.estimate}`);
  const os = osLine(body.services);
  if (os !== undefined) lines.push(`os:       ${os}`);
  lines.push(`status:   ${file}`);
  ctx.stdout(`${lines.join('\n')}\n`);
  return 0;
}

async function run(ctx: CommandContext): Promise<number> {
  if (ctx.argv[0] === 'status') return status(ctx, ctx.argv.slice(1));
  const { values, positionals } = parseOptions(
    ctx.argv,
    { config: { type: 'string' }, root: { type: 'string' }, 'log-format': { type: 'string' } },
    true,
  );
  if (positionals.length > 0) throw subcommandError(positionals[0], ['status']);
  choiceOption(values['log-format'], '--log-format', LOG_FORMATS);
  const format = chooseLogFormat(values['log-format'], ctx.env, process.stdout.isTTY);
  if (format === undefined)
    throw new UsageError(`VIGIL_LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}`);
  const paths = new HostPaths(values.root ?? ctx.env.VIGIL_ROOT ?? '/');
  const configPath = values.config ?? ctx.env.VIGIL_CONFIG ?? paths.configFile;
  const config = await loadConfig(configPath);
  const logger = new JsonLogger('vigil', { level: config.log.level, format });
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
  subcommands: { status: STATUS_USAGE },
  moreExitCodes: `${EXIT_NOT_RUNNING} not running (hub status)`,
  badValueExamples: [
    ['--log-format', 'xml'],
    ['status', '--json=yes'],
  ],
  run,
};
