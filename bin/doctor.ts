/**
 * `vigil doctor`: what this device has and what the hub would choose, each a
 * pass / warn / fail with a one-line hint (checks: bin/doctor-checks.ts; the
 * JSON report: docs/doctor.md). Read-only, and it never prints a secret.
 */
import { readFile } from 'node:fs/promises';
import type { Command, CommandContext } from '../base/command.js';
import { parseOptions, secondsOption } from '../base/command.js';
import { httpRequest } from '../base/http.js';
import { reasonOf } from '../base/errors.js';
import { LibV4l2Binding } from '../hw/camera/v4l2-binding.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { run } from '../hw/os/run.js';
import { loadConfig, parseConfig } from '../firmware/config/config.js';
import type { VigilConfig } from '../firmware/config/config.js';
import { formatReport, runDoctor } from './doctor-checks.js';
import type { DoctorSettings } from './doctor-checks.js';

const USAGE = `
Usage: vigil doctor [--json] [--config PATH] [--root DIR] [--timeout S]

Checks this device and says what the hub found and would choose: board and
kernel, cameras and their formats (H.264?), hardware (V4L2 M2M) encoders, the
encoder path and why, the storage key source, tryboot A/B support, Wi-Fi AP
mode (iw list), the LUKS data volume, free space, relay and update server
reachability, clock sync. Each check is PASS, WARN or FAIL with a hint.
Nothing secret is read or printed: safe to send to support.

Options:
  --json         the report as JSON (format "vigil-doctor/1", docs/doctor.md)
  --config PATH  configuration file (default /etc/vigil/config.json, or $VIGIL_CONFIG)
  --root DIR     prefix for every host path (tests; default / or $VIGIL_ROOT)
  --timeout S    per network check and per tool, seconds [5]
  --help         show this help

Exit code 1 when any check FAILs (warnings alone exit 0).
`;

async function settings(
  path: string,
): Promise<{ config: VigilConfig; problem: string; source: string }> {
  try {
    return { config: await loadConfig(path), problem: '', source: path };
  } catch (e) {
    const missing = reasonOf(e).startsWith('config file not found');
    return {
      config: parseConfig({}),
      problem: missing ? '' : reasonOf(e),
      source: missing ? `${path} absent: defaults` : path,
    };
  }
}

/**
 * The relay the running hub uses (`services.relay.url` of its status file): from the config,
 * the provisioning bundle or the phone's choice. The doctor unlocks nothing, so on a card whose
 * relay came with its bundle this is the only place it can learn it (while the hub runs).
 */
async function hubRelayUrl(paths: HostPaths): Promise<string | undefined> {
  const raw = await readFile(paths.host('/run/vigil/status.json'), 'utf8').catch(() => undefined);
  if (raw === undefined) return undefined;
  try {
    const status = JSON.parse(raw) as { services?: { relay?: { url?: unknown } } };
    const url = status.services?.relay?.url;
    return typeof url === 'string' && url !== '' ? url : undefined;
  } catch {
    return undefined; // a status file being rewritten: as if there were none
  }
}

async function runCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseOptions(ctx.argv, {
    json: { type: 'boolean' },
    config: { type: 'string' },
    root: { type: 'string' },
    timeout: { type: 'string' },
  });
  const timeoutMs = (secondsOption(values.timeout, '--timeout') ?? 5) * 1000;
  const paths = new HostPaths(values.root ?? ctx.env.VIGIL_ROOT ?? '/');
  const { config, problem, source } = await settings(
    values.config ?? ctx.env.VIGIL_CONFIG ?? paths.configFile,
  );
  const s: DoctorSettings = {
    encoder: config.camera.encoder,
    dataDir: config.storage.dataDir,
    minFreeMiB: config.retention.minFreeMiB,
    relayUrl: config.relay.url ?? (await hubRelayUrl(paths)),
    otaUrl: config.ota.repositoryUrl,
    configProblem: problem,
    configSource: source,
  };
  const report = await runDoctor(
    {
      binding: new LibV4l2Binding({ devDir: paths.host('/dev') }),
      run: async (cmd, args) => (await run(cmd, args, { timeoutMs })).stdout.toString('utf8'),
      paths,
      httpStatus: async (url) => {
        const a = await httpRequest(url, { signal: AbortSignal.timeout(timeoutMs) });
        a.discard();
        return a.status;
      },
      now: () => new Date(),
    },
    s,
  );
  ctx.stdout(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.counts.fail > 0 ? 1 : 0;
}

export const command: Command = {
  name: 'doctor',
  summary: 'check this device: camera, encoder, keys, Wi-Fi, storage, services',
  usage: USAGE,
  badValueExamples: [['--timeout', 'soon'], ['--json=yes']],
  run: runCommand,
};
