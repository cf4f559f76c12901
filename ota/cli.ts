/**
 * `vigil ota`: the signed update channel.
 *
 *   release side: init-repo, bundle, release, refresh, rotate-keys, serve
 *   device side:  check (one poll), agent (poll forever), probe (health answer
 *                 of this install, used by the trial of a new slot)
 *
 * Passphrases never travel in argv: --passphrase-file PATH or --passphrase-stdin.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  UsageError,
  intOption,
  parseOptions,
  portOption,
  secondsOption,
  subcommandError,
} from '../base/command.js';
import type { OptionsSpec } from '../base/command.js';
import type { Command, CommandContext } from '../base/command.js';
import { CrashController, DurableFs } from '../hw/os/fs.js';
import { HostPaths } from '../hw/os/host-paths.js';
import { JsonLogger } from '../base/logger.js';
import { OtaAgent } from './agent.js';
import type { OtaOutcome } from './agent.js';
import { buildAppBundle, readBundleManifest } from './bundle.js';
import { ROLES } from './metadata.js';
import type { RoleName } from './metadata.js';
import { osDevice, raucBackend, releaseRootfs } from './os-cli.js';
import { ProcessTrialProbe } from './probe.js';
import { initRepo, refresh, release, rotateKeys } from './repo.js';
import type { RepoContext } from './repo.js';
import { HostAppSlots } from './slots.js';
import { startStaticServer } from './static-server.js';
import { HttpTransport } from './transport.js';
import { installTrustedRoot } from './verify.js';

const USAGE = `Usage: vigil ota <subcommand> [options]

Release side (keys stay in --keys, never inside --repo):
  init-repo  --repo DIR --keys DIR [--root-keys N] [--root-threshold M]
             [--passphrase-file F | --passphrase-stdin]   seal the root key(s)
  bundle     --app-dir DIR --out FILE [--version V]       tarball of dist/ + production node_modules
  release    BUNDLE --repo DIR --keys DIR [--channel stable|beta|...]
  release    --rootfs IMAGE --board NAME --version V --rauc-cert PEM --rauc-key PEM
             --repo DIR --keys DIR [--channel C] [--adaptive]
             OS update: a signed RAUC bundle (verity) of the image's root A + boot files
  refresh    --repo DIR --keys DIR                        re-sign timestamp (daily, from cron)
  rotate-keys --repo DIR --keys DIR --roles timestamp,snapshot,targets[,root] [passphrase option]
  serve      --repo DIR [--host 127.0.0.1] [--port 8080]  static HTTP with Range support

Device side:
  check      --state DIR --slots DIR --url URL [--channel stable] [--root ROOT.json]
             [--trial-timeout SECONDS] [--busy-file PATH]  one update check, prints the outcome
  agent      (same options) [--interval SECONDS] [--jitter 0.25]   poll until stopped
  probe      health answer of this install (JSON line)
  status     [--state DIR] [--slots DIR] [--json]   slots, a pending trial, the last outcome
  os-check   --url URL [--state DIR] [--root ROOT.json] [--busy-file PATH] [--downloads DIR]
             one OS update check: download (to the data volume, or DIR), rauc install,
             reboot into the trial slot
  os-confirm [--state DIR] [--deadline]   settle an OS trial (mark-good, or mark-bad + reboot);
                             --deadline: a trial still pending fails (the hub never confirmed it)
  rauc-backend CMD ...       RAUC's custom bootloader backend (run by RAUC)
`;

function parse(
  ctx: CommandContext,
  options: OptionsSpec,
  positionals = false,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  return parseOptions(ctx.argv.slice(1), options, positionals);
}

function req(v: Record<string, string | boolean | undefined>, name: string): string {
  const x = v[name];
  if (typeof x !== 'string' || x === '') throw new UsageError(`--${name} is required`);
  return x;
}

function opt(v: Record<string, string | boolean | undefined>, name: string): string | undefined {
  const x = v[name];
  return typeof x === 'string' ? x : undefined;
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function passphraseOf(
  v: Record<string, string | boolean | undefined>,
): Promise<Buffer | undefined> {
  const file = opt(v, 'passphrase-file');
  let b: Buffer | undefined;
  if (file !== undefined) b = await readFile(file);
  else if (v['passphrase-stdin'] === true) b = await readStdin();
  if (b === undefined) return undefined;
  // one trailing newline is not part of the passphrase
  let end = b.length;
  if (end > 0 && b[end - 1] === 0x0a) end -= 1;
  if (end > 0 && b[end - 1] === 0x0d) end -= 1;
  return b.subarray(0, end);
}

const REPO_OPTS = {
  repo: { type: 'string' },
  keys: { type: 'string' },
  'passphrase-file': { type: 'string' },
  'passphrase-stdin': { type: 'boolean' },
} as const;

async function repoCtx(
  v: Record<string, string | boolean | undefined>,
  fs: DurableFs,
): Promise<RepoContext> {
  const passphrase = await passphraseOf(v);
  return {
    repoDir: resolve(req(v, 'repo')),
    keysDir: resolve(req(v, 'keys')),
    fs,
    logger: new JsonLogger('vigil-ota', {
      write: (line: string) => process.stderr.write(`${line}\n`),
    }),
    ...(passphrase ? { passphrase } : {}),
  };
}

function findUp(start: string, name: string): string[] {
  const out: string[] = [];
  let d = start;
  for (let i = 0; i < 4; i++) {
    out.push(join(d, name));
    d = dirname(d);
  }
  return out;
}

async function probeAnswer(): Promise<{ ok: boolean; version: string; detail?: string }> {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [...findUp(here, 'vigil-bundle.json'), ...findUp(here, 'package.json')]) {
    try {
      const j = JSON.parse(await readFile(p, 'utf8')) as {
        version?: unknown;
        name?: unknown;
        format?: unknown;
      };
      if (typeof j.version !== 'string') continue;
      if (j.format !== 'vigil-bundle/1' && j.name !== 'vigil') continue;
      // Load the heavy modules the hub needs: a broken node_modules fails here.
      await import('zod');
      return { ok: true, version: j.version };
    } catch {
      /* next candidate */
    }
  }
  return { ok: false, version: '0.0.0', detail: 'no package.json or bundle manifest found' };
}

async function device(ctx: CommandContext, loop: boolean): Promise<number> {
  const { values: v } = parse(ctx, {
    state: { type: 'string' },
    slots: { type: 'string' },
    url: { type: 'string' },
    channel: { type: 'string' },
    root: { type: 'string' },
    'trial-timeout': { type: 'string' },
    'busy-file': { type: 'string' },
    interval: { type: 'string' },
    jitter: { type: 'string' },
  });
  const trialTimeout = secondsOption(opt(v, 'trial-timeout'), '--trial-timeout') ?? 120;
  const interval = secondsOption(opt(v, 'interval'), '--interval');
  const jitterRaw = opt(v, 'jitter');
  const jitter = jitterRaw === undefined ? undefined : Number(jitterRaw);
  if (jitter !== undefined && (jitterRaw?.trim() === '' || !(jitter >= 0 && jitter <= 1)))
    throw new UsageError(`--jitter must be a number from 0 to 1, got "${jitterRaw ?? ''}"`);
  const fs = new DurableFs(CrashController.fromEnv(ctx.env));
  const stateDir = resolve(req(v, 'state'));
  const rootFile = opt(v, 'root');
  const metaDir = join(stateDir, 'metadata');
  if ((await fs.readIfExists(join(metaDir, 'root.json'))) === undefined) {
    if (rootFile === undefined)
      throw new UsageError(
        `no trusted root in ${metaDir}: give --root ROOT.json (the provisioned root)`,
      );
    await installTrustedRoot(fs, metaDir, await readFile(rootFile));
  }
  const busyFile = opt(v, 'busy-file');
  const outcomes: OtaOutcome[] = [];
  const agent = new OtaAgent({
    stateDir,
    fs,
    slots: new HostAppSlots(resolve(req(v, 'slots')), fs),
    transport: new HttpTransport(),
    repoUrl: req(v, 'url'),
    channel: opt(v, 'channel') ?? 'stable',
    probe: new ProcessTrialProbe(),
    // The CLI has no supervisor to ask: the probe of the new slot is the whole trial.
    health: { check: () => Promise.resolve({ ok: true, checks: { 'probe-only': { ok: true } } }) },
    busy: {
      isBusy: async () => busyFile !== undefined && (await fs.readIfExists(busyFile)) !== undefined,
    },
    reporter: {
      report: (o) => {
        outcomes.push(o);
        ctx.stdout(`${JSON.stringify(o)}\n`);
      },
    },
    trialTimeoutMs: trialTimeout * 1000,
    logger: new JsonLogger('vigil-ota', {
      write: (line: string) => process.stderr.write(`${line}\n`),
    }),
    ...(interval !== undefined ? { intervalMs: interval * 1000 } : {}),
    ...(jitter !== undefined ? { jitter } : {}),
  });
  if (loop) {
    const ac = new AbortController();
    const stop = (): void => {
      ac.abort();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    await agent.run(ac.signal);
    return 0;
  }
  const o = await agent.check();
  if (!outcomes.includes(o)) ctx.stdout(`${JSON.stringify(o)}\n`);
  return o.kind === 'committed' || o.kind === 'up-to-date' ? 0 : 1;
}

async function runOta(ctx: CommandContext): Promise<number> {
  const sub = ctx.argv[0];
  const fs = new DurableFs();
  switch (sub) {
    case 'init-repo': {
      const { values: v } = parse(ctx, {
        ...REPO_OPTS,
        'root-keys': { type: 'string' },
        'root-threshold': { type: 'string' },
      });
      const rootKeys = intOption(opt(v, 'root-keys'), '--root-keys', 1, 16) ?? 1;
      const rootThreshold =
        intOption(opt(v, 'root-threshold'), '--root-threshold', 1, rootKeys) ?? rootKeys;
      const c = await repoCtx(v, fs);
      const r = await initRepo(c, { rootKeys, rootThreshold });
      ctx.stdout(
        `repository: ${c.repoDir}\ntrusted root for devices: ${r.rootPath}\nkeys: ${c.keysDir} (${String(r.keyFiles.length)} files; move the root key offline)\n`,
      );
      return 0;
    }
    case 'bundle': {
      const { values: v } = parse(ctx, {
        'app-dir': { type: 'string' },
        out: { type: 'string' },
        version: { type: 'string' },
      });
      const epoch =
        ctx.env.SOURCE_DATE_EPOCH === undefined ? undefined : Number(ctx.env.SOURCE_DATE_EPOCH);
      const ver = opt(v, 'version');
      const r = await buildAppBundle({
        appDir: resolve(opt(v, 'app-dir') ?? '.'),
        out: resolve(req(v, 'out')),
        fs,
        ...(ver !== undefined ? { version: ver } : {}),
        ...(epoch !== undefined && Number.isInteger(epoch) ? { sourceDateEpoch: epoch } : {}),
      });
      ctx.stdout(
        `bundle ${r.manifest.kind} ${r.manifest.version}: ${String(r.files)} entries, ${String(r.bytes)} bytes\n`,
      );
      return 0;
    }
    case 'release': {
      const { values: v, positionals } = parse(
        ctx,
        {
          ...REPO_OPTS,
          channel: { type: 'string' },
          rootfs: { type: 'string' },
          board: { type: 'string' },
          version: { type: 'string' },
          'rauc-cert': { type: 'string' },
          'rauc-key': { type: 'string' },
          adaptive: { type: 'boolean' },
        },
        true,
      );
      if (opt(v, 'rootfs') !== undefined) {
        if (positionals.length > 0)
          throw new UsageError('release --rootfs takes no bundle file (it builds one)');
        return releaseRootfs(ctx, v, await repoCtx(v, fs));
      }
      const file = positionals[0];
      if (file === undefined || positionals.length !== 1)
        throw new UsageError('release takes exactly one bundle file');
      const manifest = await readBundleManifest(resolve(file));
      const c = await repoCtx(v, fs);
      const r = await release(c, {
        bundle: await readFile(resolve(file)),
        channel: opt(v, 'channel') ?? 'stable',
        version: manifest.version,
        kind: manifest.kind,
      });
      ctx.stdout(
        `released ${r.targetPath} (${String(r.length)} bytes, sha256 ${r.sha256}); targets v${String(r.targetsVersion)}, snapshot v${String(r.snapshotVersion)}, timestamp v${String(r.timestampVersion)}\n`,
      );
      return 0;
    }
    case 'refresh': {
      const { values: v } = parse(ctx, REPO_OPTS);
      const done = await refresh(await repoCtx(v, fs));
      ctx.stdout(`re-signed: ${done.join(', ')}\n`);
      return 0;
    }
    case 'rotate-keys': {
      const { values: v } = parse(ctx, { ...REPO_OPTS, roles: { type: 'string' } });
      const roles = req(v, 'roles')
        .split(',')
        .map((s) => s.trim());
      for (const r of roles)
        if (!(ROLES as readonly string[]).includes(r)) throw new UsageError(`unknown role "${r}"`);
      const r = await rotateKeys(await repoCtx(v, fs), roles as RoleName[]);
      ctx.stdout(
        `rotated ${roles.join(', ')}: root is now version ${String(r.rootVersion)}; ${String(r.retired.length)} key(s) retired\n`,
      );
      return 0;
    }
    case 'serve': {
      const { values: v } = parse(ctx, {
        repo: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
      });
      const port = portOption(opt(v, 'port'), '--port', true) ?? 8080;
      const s = await startStaticServer(resolve(req(v, 'repo')), {
        host: opt(v, 'host') ?? '127.0.0.1',
        port,
      });
      ctx.stdout(`serving ${req(v, 'repo')} at ${s.url}\n`);
      await new Promise<void>((res) => {
        process.once('SIGTERM', res);
        process.once('SIGINT', res);
      });
      await s.close();
      return 0;
    }
    case 'check':
      return device(ctx, false);
    case 'os-check':
      return osDevice(ctx, false);
    case 'os-confirm':
      return osDevice(ctx, true);
    case 'rauc-backend':
      return raucBackend(ctx);
    case 'agent':
      return device(ctx, true);
    case 'status': {
      const { values: v } = parse(ctx, {
        state: { type: 'string' },
        slots: { type: 'string' },
        json: { type: 'boolean' },
      });
      const paths = HostPaths.fromEnv(ctx.env);
      const stateDir = resolve(opt(v, 'state') ?? paths.host('/var/lib/vigil/ota'));
      const slots = new HostAppSlots(resolve(opt(v, 'slots') ?? paths.host('/opt/vigil')), fs);
      const { pointer, markers } = await slots.status();
      const agentFile = await fs.readIfExists(join(stateDir, 'agent.json'));
      const agent = new OtaAgent({
        stateDir,
        fs,
        slots,
        transport: new HttpTransport(),
        repoUrl: 'http://unused.invalid/',
        channel: 'stable',
        probe: new ProcessTrialProbe(),
        health: { check: () => Promise.resolve({ ok: false, checks: {} }) },
        busy: { isBusy: () => false },
        reporter: { report: () => undefined },
      });
      const state = agentFile
        ? (JSON.parse(agentFile.toString('utf8')) as { bad?: unknown; attempts?: unknown })
        : {};
      const report = {
        committed: pointer.committed,
        versions: { a: markers.a?.version ?? null, b: markers.b?.version ?? null },
        trial: pointer.trial ?? null,
        bad: state.bad ?? [],
        attempts: state.attempts ?? {},
        last: (await agent.lastOutcome()) ?? null,
      };
      if (v.json === true) ctx.stdout(`${JSON.stringify(report, null, 2)}\n`);
      else ctx.stdout(formatOtaStatus(report));
      return 0;
    }
    case 'probe': {
      parse(ctx, {});
      const a = await probeAnswer();
      ctx.stdout(`${JSON.stringify(a)}\n`);
      return a.ok ? 0 : 1;
    }
    case undefined:
    default:
      throw subcommandError(sub, Object.keys(SUBCOMMANDS));
  }
}

/** The human form of `vigil ota status`. */
export function formatOtaStatus(r: {
  committed: string;
  versions: { a: string | null; b: string | null };
  trial: unknown;
  bad: unknown;
  last: unknown;
}): string {
  const slot = (n: 'a' | 'b'): string =>
    `${n}${r.committed === n ? ' (committed)' : ''}: ${r.versions[n] ?? 'empty'}`;
  const last = (r.last as { outcome?: { kind?: unknown; version?: unknown } } | null)?.outcome;
  return (
    [
      `slot ${slot('a')}`,
      `slot ${slot('b')}`,
      `trial:  ${r.trial === null ? 'none' : JSON.stringify(r.trial)}`,
      `bad:    ${Array.isArray(r.bad) && r.bad.length > 0 ? r.bad.join(', ') : 'none'}`,
      `last:   ${last === undefined ? 'no update check yet' : `${String(last.kind)}${typeof last.version === 'string' ? ` ${last.version}` : ''}`}`,
    ].join('\n') + '\n'
  );
}

const OTA_SUB = (usage: string, text: string): string =>
  `\nUsage: vigil ota ${usage}\n\n${text.trim()}\n`;

const SUBCOMMANDS: Readonly<Record<string, string>> = {
  'init-repo': OTA_SUB(
    'init-repo --repo DIR --keys DIR [--root-keys N] [--root-threshold M] [--passphrase-file F | --passphrase-stdin]',
    'Creates a repository and seals its root key(s) in --keys (keep them offline).',
  ),
  bundle: OTA_SUB(
    'bundle --app-dir DIR --out FILE [--version V]',
    'Packs dist/ and the production node_modules into a release tarball.',
  ),
  release: OTA_SUB(
    'release BUNDLE --repo DIR --keys DIR [--channel NAME] [passphrase option]',
    'Signs BUNDLE into the repository on a channel (default stable).',
  ),
  refresh: OTA_SUB(
    'refresh --repo DIR --keys DIR [passphrase option]',
    'Re-signs the timestamp (daily, from cron).',
  ),
  'rotate-keys': OTA_SUB(
    'rotate-keys --repo DIR --keys DIR --roles timestamp,snapshot,targets[,root] [passphrase option]',
    'Replaces the keys of the given roles.',
  ),
  serve: OTA_SUB(
    'serve --repo DIR [--host 127.0.0.1] [--port 8080]',
    'Serves the repository over HTTP with Range support.',
  ),
  check: OTA_SUB(
    'check --state DIR --slots DIR --url URL [--channel stable] [--root ROOT.json] [--trial-timeout SECONDS] [--busy-file PATH]',
    'One update check; prints the outcome as a JSON line. Exit 1 unless committed or up to date.',
  ),
  agent: OTA_SUB(
    'agent (the options of check) [--interval SECONDS] [--jitter 0..1]',
    'Polls for updates until stopped.',
  ),
  probe: OTA_SUB('probe', 'Prints the health answer of this install (a JSON line).'),
  status: OTA_SUB(
    'status [--state DIR] [--slots DIR] [--json]',
    'The app slots, a pending trial, and the last outcome.',
  ),
};

export const command: Command = {
  name: 'ota',
  summary: 'signed update channel: init-repo, release, agent',
  usage: USAGE,
  subcommands: SUBCOMMANDS,
  badValueExamples: [
    ['serve', '--repo', '.', '--port', 'abc'],
    ['check', '--state', '/nonexistent', '--trial-timeout', 'soon'],
    ['init-repo', '--repo', '/nonexistent', '--keys', '/nonexistent', '--root-keys', 'x'],
    ['status', '--json=1'],
  ],
  run: runOta,
};
