/**
 * `vigil ota` subcommands for OS updates (dispatched from ota/cli.ts):
 *
 *   release --rootfs IMAGE   build a RAUC bundle from a card image and release it (kind rootfs)
 *   rauc-backend CMD ...     RAUC's custom bootloader backend (RAUC runs it)
 *   os-check                 one OS update check (download, rauc install, tryboot reboot)
 *   os-confirm               settle a trial boot (health → mark-good, or mark-bad + reboot)
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { pause } from '../base/async.js';
import { UsageError } from '../base/command.js';
import type { CommandContext } from '../base/command.js';
import { JsonLogger } from '../base/logger.js';
import { CrashController, DurableFs } from '../hw/os/fs.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { run } from '../hw/os/run.js';
import { FIRMWARE_MOUNT } from '../protocol/card-layout.js';
import { DATA_VOLUME_NAME } from '../protocol/data-volume.js';
import { OS_VERSION_FILE } from '../protocol/rauc-system.js';
import type { HealthCheck } from './agent.js';
import { OsUpdateAgent } from './os-agent.js';
import { RaucCli } from './rauc.js';
import { boardBackend, OS_TRIAL_FILE } from './rauc-backend.js';
import { buildRootfsBundle } from './rauc-bundle.js';
import { release } from './repo.js';
import type { RepoContext } from './repo.js';
import { FetchTransport } from './transport.js';
import { installTrustedRoot } from './verify.js';
import { isVersion } from './version.js';

type Values = Record<string, string | boolean | undefined>;

/** The OS agent's trial record on the boot FAT (seen by both slots). */
export { OS_TRIAL_FILE } from './rauc-backend.js';

/** The booted OS version (OS_VERSION_FILE), 0.0.0 for an image that predates the file. */
export async function runningOsVersion(paths: HostPaths, fs: DurableFs): Promise<string> {
  const text = (await fs.readIfExists(paths.host(OS_VERSION_FILE)))?.toString('utf8').trim();
  return text !== undefined && isVersion(text) ? text : '0.0.0';
}
const HUB_SERVICE = 'vigil-hub.service';

/** What the CLI health check reads of the running system (ports, for tests). */
export interface HubServicePorts {
  /** `systemctl is-active` of the hub unit. */
  unitState(signal: AbortSignal): Promise<{ active: boolean; state: string }>;
  /** The data volume is unlocked and mounted (by the hub, in its namespace, or here). */
  storageOpen(): Promise<boolean>;
  /** Pause between looks while the hub is still unlocking. Default 2 s. */
  readonly pollMs?: number;
}

/**
 * `vigil ota os-confirm`'s health check: the hub unit is active **and** its data volume is open.
 * An active unit alone is not enough: a hub that cannot unlock storage stays active (locked,
 * retrying, waiting for a key), and a new OS that cannot open the card's volume must roll back,
 * not be committed (found on the twin in session 8). A unit that is not active fails at once; a
 * locked volume is looked at again until the trial's deadline (`signal`) ends the check: the
 * first boot of a slot may take a while to unlock.
 */
export function hubServiceHealth(ports: HubServicePorts): HealthCheck {
  const pollMs = ports.pollMs ?? 2000;
  return {
    check: async ({ signal }) => {
      for (;;) {
        const unit = await ports.unitState(signal);
        if (!unit.active) return { ok: false, checks: { hub: { ok: false, detail: unit.state } } };
        if (await ports.storageOpen())
          return {
            ok: true,
            checks: {
              hub: { ok: true, detail: unit.state },
              storage: { ok: true, detail: 'data volume open' },
            },
          };
        await pause(pollMs, signal);
        if (signal.aborted)
          return {
            ok: false,
            checks: {
              hub: { ok: true, detail: unit.state },
              storage: { ok: false, detail: 'the data volume is still locked' },
            },
          };
      }
    },
  };
}

/** The OS agent's download directory in the data volume (as bin/hub-os.ts's OS_PATHS). */
export const DATA_DOWNLOADS_DIR = 'ota-os';

/**
 * Where the data volume is mounted, as a path this process can use: its own mount, else the
 * hub's (the hub unit mounts it in its own mount namespace: reached through /proc/PID/root).
 * Undefined when it is not mounted (locked).
 */
export async function dataVolumeDir(paths: HostPaths): Promise<string | undefined> {
  const source = `/dev/mapper/${DATA_VOLUME_NAME}`;
  const mountedIn = async (pid: string): Promise<string | undefined> => {
    const info = await readFile(paths.host(`/proc/${pid}/mountinfo`), 'utf8').catch(() => '');
    for (const line of info.split('\n')) {
      // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
      const [left, right] = line.split(' - ');
      const at = left?.split(' ')[4];
      if (right?.split(' ')[1] === source && at !== undefined) return at;
    }
    return undefined;
  };
  const here = await mountedIn('self');
  if (here !== undefined) return paths.host(here);
  const pids = await readdir(paths.host('/proc')).catch(() => [] as string[]);
  for (const pid of pids.filter((p) => /^\d+$/.test(p))) {
    const at = await mountedIn(pid);
    if (at !== undefined) return paths.host(`/proc/${pid}/root${at}`);
  }
  return undefined;
}

function parse(ctx: CommandContext, options: ParseArgsConfig['options']): Values {
  try {
    return parseArgs({ args: [...ctx.argv.slice(1)], options: options ?? {}, strict: true })
      .values as Values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function req(v: Values, name: string): string {
  const x = v[name];
  if (typeof x !== 'string' || x === '') throw new UsageError(`--${name} is required`);
  return x;
}

/** `release --rootfs IMAGE`: bundle the image's OS, then publish it like an app bundle. */
export async function releaseRootfs(
  ctx: CommandContext,
  v: Values,
  repo: RepoContext,
): Promise<number> {
  const image = resolve(req(v, 'rootfs'));
  const version = req(v, 'version');
  if (!isVersion(version)) throw new UsageError(`--version "${version}" is not x.y.z`);
  const out = join(repo.repoDir, '..', `.vigil-os-${version}.raucb`);
  const r = await buildRootfsBundle({
    image,
    board: req(v, 'board'),
    version,
    cert: resolve(req(v, 'rauc-cert')),
    key: resolve(req(v, 'rauc-key')),
    out,
    workDir: `${out}.work`,
    adaptive: v.adaptive === true,
  });
  try {
    const rel = await release(repo, {
      bundle: await readFile(out),
      channel: typeof v.channel === 'string' ? v.channel : 'stable',
      version,
      kind: 'rootfs',
    });
    ctx.stdout(
      `released ${rel.targetPath} (RAUC bundle, ${String(r.bytes)} bytes from a ${String(r.rootfsBytes)}-byte root; sha256 ${rel.sha256})\n`,
    );
  } finally {
    await rm(out, { force: true });
  }
  return 0;
}

/** RAUC runs this (RAUC_PATHS.backend): argv is RAUC's. */
export async function raucBackend(ctx: CommandContext): Promise<number> {
  const backend = await boardBackend(HostPaths.fromEnv(ctx.env), new DurableFs());
  ctx.stdout(await backend.handle(ctx.argv.slice(1)));
  return 0;
}

/** os-check / os-confirm on the device. */
export async function osDevice(ctx: CommandContext, confirm: boolean): Promise<number> {
  const v = parse(ctx, {
    state: { type: 'string' },
    url: { type: 'string' },
    channel: { type: 'string' },
    root: { type: 'string' },
    'busy-file': { type: 'string' },
    downloads: { type: 'string' },
    deadline: { type: 'boolean' },
  });
  if (v.deadline === true && !confirm) throw new UsageError('--deadline is for os-confirm');
  const fs = new DurableFs(CrashController.fromEnv(ctx.env));
  const paths = HostPaths.fromEnv(ctx.env);
  const stateDir = resolve(
    typeof v.state === 'string' ? v.state : paths.host('/var/lib/vigil/ota'),
  );
  const metaDir = join(stateDir, 'metadata');
  if ((await fs.readIfExists(join(metaDir, 'root.json'))) === undefined) {
    if (typeof v.root !== 'string')
      throw new UsageError(`no trusted root in ${metaDir}: give --root ROOT.json`);
    await installTrustedRoot(fs, metaDir, await readFile(v.root));
  }
  const backend = await boardBackend(paths, fs);
  const busyFile = typeof v['busy-file'] === 'string' ? v['busy-file'] : undefined;
  // The hub's unit reached READY (Type=notify; vigil-os-confirm.service runs After= it): the
  // supervisor opened storage, MLS state and the camera pipeline, or it would not be active.
  // --deadline (vigil-os-confirm.timer): the hub confirms a healthy trial itself; a trial
  // still pending this late never got its confirmation.
  const deadline: HealthCheck = {
    check: () =>
      Promise.resolve({
        ok: false,
        checks: {
          hub: {
            ok: false,
            detail: 'the hub did not confirm the new OS before the trial deadline',
          },
        },
      }),
  };
  const health = hubServiceHealth({
    unitState: async (signal) => {
      const r = await run('systemctl', ['is-active', HUB_SERVICE], {
        okExitCodes: [0, 3, 4],
        timeoutMs: 30_000,
        signal,
      });
      return { active: r.exitCode === 0, state: r.stdout.toString('utf8').trim() };
    },
    storageOpen: async () => (await dataVolumeDir(paths)) !== undefined,
  });
  // the bundle goes to the data volume (the root filesystem has no room for an OS), or --downloads
  const data = typeof v.downloads === 'string' || confirm ? undefined : await dataVolumeDir(paths);
  const downloads =
    typeof v.downloads === 'string'
      ? resolve(v.downloads)
      : data === undefined
        ? undefined
        : join(data, DATA_DOWNLOADS_DIR);
  const agent = new OsUpdateAgent({
    stateDir,
    stateFile: paths.host(join(FIRMWARE_MOUNT, OS_TRIAL_FILE)),
    downloadDir: () => downloads,
    fs,
    transport: new FetchTransport(),
    repoUrl: confirm ? 'http://unused.invalid/' : req(v, 'url'),
    channel: typeof v.channel === 'string' ? v.channel : 'stable',
    rauc: new RaucCli(),
    boot: {
      isTrialBoot: async () => (await backend.booted())?.trial === true,
      rebootIntoTrial: async () => {
        await backend.rebootIntoPrimary();
      },
      reboot: async () => {
        await backend.rebootIntoPrimary();
      },
    },
    health: v.deadline === true ? deadline : health,
    busy: {
      isBusy: async () => busyFile !== undefined && (await fs.readIfExists(busyFile)) !== undefined,
    },
    reporter: {
      report: (o) => {
        ctx.stdout(`${JSON.stringify(o)}\n`);
      },
    },
    runningVersion: () => runningOsVersion(paths, fs),
    logger: new JsonLogger('vigil-ota-os', {
      write: (line: string) => process.stderr.write(`${line}\n`),
    }),
  });
  if (confirm) {
    const o = await agent.confirm();
    if (o === undefined) ctx.stdout('no OS trial to settle\n');
    return o === undefined || o.kind === 'committed' ? 0 : 1;
  }
  const o = await agent.check();
  if (o.kind === 'up-to-date' || o.kind === 'restarting') ctx.stdout(`${JSON.stringify(o)}\n`);
  return o.kind === 'up-to-date' || o.kind === 'restarting' ? 0 : 1;
}
