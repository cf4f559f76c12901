/**
 * Shared fixtures for the OTA tests: a real repository on disk (real keys,
 * real signatures), real bundles built from small app trees whose
 * `dist/bin/vigil.js` answers the trial probe (healthy, unhealthy or hanging),
 * a real HTTP server on loopback with switchable faults, and a device (state
 * dir + A/B slots) driven by the real agent; for OS updates, a simulated Pi card
 * (SimCard) behind the project's RAUC backend.
 */
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrashController, DurableFs } from '../../hw/os/fs.js';
import { OtaAgent } from '../../ota/agent.js';
import { command } from '../../ota/cli.js';
import type { AgentOptions, HealthReport, OtaOutcome } from '../../ota/agent.js';
import { buildAppBundle } from '../../ota/bundle.js';
import { ProcessTrialProbe } from '../../ota/probe.js';
import { initRepo, release } from '../../ota/repo.js';
import type { RepoContext } from '../../ota/repo.js';
import type { OsBootPort } from '../../ota/os-agent.js';
import { RaucError } from '../../ota/rauc.js';
import type { RaucPort, RaucStatus } from '../../ota/rauc.js';
import { RaucBootBackend } from '../../ota/rauc-backend.js';
import { HostAppSlots, treeDigest } from '../../ota/slots.js';
import type { SlotName } from '../../ota/slots.js';
import { serveStatic, startStaticServer } from '../../ota/static-server.js';
import type { StaticServer } from '../../ota/static-server.js';
import { FetchTransport } from '../../ota/transport.js';
import { installTrustedRoot } from '../../ota/verify.js';
import { autobootTxt, BOOT_PARTITIONS, parseAutoboot } from '../../protocol/card-layout.js';
import type { CardSlot } from '../../protocol/card-layout.js';

export type AppBehaviour = 'healthy' | 'unhealthy' | 'hang';

export async function tempDir(prefix = 'vigil-ota-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A minimal app tree: package.json + dist/bin/vigil.js answering `ota probe`. */
export async function makeAppTree(
  dir: string,
  version: string,
  behaviour: AppBehaviour,
): Promise<void> {
  await mkdir(join(dir, 'dist', 'bin'), { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'vigil', version, type: 'module' }),
  );
  const body =
    behaviour === 'healthy'
      ? `console.log(JSON.stringify({ ok: true, version: pkg.version }));`
      : behaviour === 'unhealthy'
        ? `console.log(JSON.stringify({ ok: false, version: pkg.version, detail: 'MLS state does not load' })); process.exitCode = 1;`
        : `setInterval(() => {}, 1000);`;
  await writeFile(
    join(dir, 'dist', 'bin', 'vigil.js'),
    `import { readFileSync } from 'node:fs';
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
if (process.argv[2] === 'ota' && process.argv[3] === 'probe') { ${body} }
`,
  );
  // Incompressible payload so bundles are big enough to cut mid-transfer.
  await writeFile(join(dir, 'dist', 'payload.bin'), randomBytes(48 * 1024));
}

const bundleCache = new Map<string, Buffer>();

/** Build (once per version and behaviour) a real bundle. */
export async function makeBundle(
  work: string,
  version: string,
  behaviour: AppBehaviour,
): Promise<Buffer> {
  const cached = bundleCache.get(`${version}/${behaviour}`);
  if (cached !== undefined) return cached;
  const app = join(work, `app-${version}-${behaviour}`);
  await makeAppTree(app, version, behaviour);
  const out = join(work, `bundle-${version}-${behaviour}.tar.gz`);
  await buildAppBundle({ appDir: app, out, fs: new DurableFs(), sourceDateEpoch: 1_700_000_000 });
  const bytes = await readFile(out);
  bundleCache.set(`${version}/${behaviour}`, bytes);
  return bytes;
}

/** Faults the test server can inject, switched on per test. */
export interface Faults {
  /** Cut the connection after this many body bytes, once, for URLs containing the key. */
  truncateOnce: Map<string, number>;
  /** Serve these bytes instead of the file, for URL paths equal to the key. */
  replace: Map<string, Buffer>;
  /** Ignore Range headers (always 200 with the whole file). */
  ignoreRange: boolean;
  requests: string[];
  /** Each request's Range header ('' without one), in the order of `requests`. */
  ranges: string[];
}

export interface Repo {
  readonly ctx: RepoContext;
  readonly server: StaticServer;
  readonly faults: Faults;
  readonly rootBytes: Buffer;
  now: Date;
  close(): Promise<void>;
}

export const T0 = new Date('2026-11-01T00:00:00Z');

/** The release side's context in `work` (repo/ and keys/), with a quick scrypt for sealed keys. */
export function repoContext(
  work: string,
  extra: Omit<Partial<RepoContext>, 'fs'> = {},
): RepoContext {
  return {
    repoDir: join(work, 'repo'),
    keysDir: join(work, 'keys'),
    fs: new DurableFs(),
    scryptLogN: 12,
    ...extra,
  };
}

/** A repository in `work` (fresh, or a copy of the one in `copyFrom`). */
export async function makeRepo(work: string, copyFrom?: string): Promise<Repo> {
  const faults: Faults = {
    truncateOnce: new Map(),
    replace: new Map(),
    ignoreRange: false,
    requests: [],
    ranges: [],
  };
  const repoDir = join(work, 'repo');
  const holder: { now: Date } = { now: T0 };
  const ctx = repoContext(work, {
    now: () => holder.now,
    passphrase: Buffer.from('offline root passphrase'),
  });
  if (copyFrom === undefined) await initRepo(ctx);
  else {
    await cp(join(copyFrom, 'repo'), repoDir, { recursive: true });
    await cp(join(copyFrom, 'keys'), ctx.keysDir, { recursive: true });
  }
  const plain = serveStatic(repoDir);
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    faults.requests.push(path);
    faults.ranges.push(req.headers.range ?? '');
    const replaced = faults.replace.get(path);
    if (replaced !== undefined) {
      res.writeHead(200, { 'content-length': replaced.length }).end(replaced);
      return;
    }
    if (faults.ignoreRange) delete req.headers.range;
    for (const [key, n] of faults.truncateOnce) {
      if (!path.includes(key)) continue;
      faults.truncateOnce.delete(key);
      // Send the headers and n bytes of the real answer, then drop the connection.
      let sent = 0;
      const origWrite = res.write.bind(res) as (c: Buffer) => boolean;
      res.write = ((chunk: Buffer) => {
        const room = n - sent;
        if (room <= 0) return true;
        const part = chunk.subarray(0, room);
        sent += part.length;
        origWrite(part);
        // Let the client consume what was sent, then drop the connection.
        if (sent >= n) setTimeout(() => res.socket?.destroy(), 300);
        return true;
      }) as typeof res.write;
      res.end = ((chunk?: unknown) => {
        if (Buffer.isBuffer(chunk)) res.write(chunk);
        setTimeout(() => res.socket?.destroy(), 300);
        return res;
      }) as typeof res.end;
      break;
    }
    plain(req, res);
  };
  const server = await startStaticServer(repoDir, { handler });
  const rootBytes = await readFile(join(repoDir, 'metadata', '1.root.json'));
  return {
    ctx,
    server,
    faults,
    rootBytes,
    get now() {
      return holder.now;
    },
    set now(d: Date) {
      holder.now = d;
    },
    close: () => server.close(),
  };
}

export async function publish(
  repo: Repo,
  work: string,
  version: string,
  behaviour: AppBehaviour = 'healthy',
  channel = 'stable',
): Promise<void> {
  await release(repo.ctx, {
    bundle: await makeBundle(work, version, behaviour),
    channel,
    version,
    kind: 'app',
  });
}

export interface Device {
  readonly dir: string;
  readonly stateDir: string;
  readonly slotsDir: string;
}

export async function makeDevice(work: string, repo: Repo, name = 'device'): Promise<Device> {
  const dir = join(work, name);
  const stateDir = join(dir, 'var', 'lib', 'vigil', 'ota');
  await installTrustedRoot(new DurableFs(), join(stateDir, 'metadata'), repo.rootBytes);
  return { dir, stateDir, slotsDir: join(dir, 'opt', 'vigil') };
}

/** The device paths under `work` (after copying a device tree there). */
export function deviceAt(work: string, name = 'device'): Device {
  const dir = join(work, name);
  return {
    dir,
    stateDir: join(dir, 'var', 'lib', 'vigil', 'ota'),
    slotsDir: join(dir, 'opt', 'vigil'),
  };
}

export async function cloneDevice(src: Device, dir: string): Promise<Device> {
  await rm(dir, { recursive: true, force: true });
  await cp(src.dir, dir, { recursive: true, verbatimSymlinks: true });
  return {
    dir,
    stateDir: src.stateDir.replace(src.dir, dir),
    slotsDir: src.slotsDir.replace(src.dir, dir),
  };
}

export interface AgentRig {
  readonly agent: OtaAgent;
  readonly outcomes: OtaOutcome[];
  readonly fs: DurableFs;
  readonly slots: HostAppSlots;
}

export function healthy(): HealthReport {
  return {
    ok: true,
    checks: { camera: { ok: true }, mls: { ok: true }, relay: { ok: true }, storage: { ok: true } },
  };
}

export function makeAgent(
  device: Device,
  repo: Repo,
  opts: {
    crash?: CrashController;
    health?: () => HealthReport | Promise<HealthReport>;
    busy?: () => boolean;
    now?: () => Date;
    extra?: Partial<AgentOptions>;
  } = {},
): AgentRig {
  const fs = new DurableFs(opts.crash ?? new CrashController());
  const slots = new HostAppSlots(device.slotsDir, fs);
  const outcomes: OtaOutcome[] = [];
  const agent = new OtaAgent({
    stateDir: device.stateDir,
    fs,
    slots,
    transport: new FetchTransport({ timeoutMs: 5000, idleMs: 5000 }),
    repoUrl: repo.server.url,
    channel: 'stable',
    // A clean environment: children must not inherit tap's coverage collection (slow, and
    // not this module's coverage anyway).
    probe: new ProcessTrialProbe({ env: { PATH: process.env.PATH } }),
    health: { check: async () => (opts.health ?? healthy)() },
    busy: { isBusy: opts.busy ?? (() => false) },
    reporter: { report: (o) => void outcomes.push(o) },
    now: opts.now ?? (() => repo.now),
    // Generous: a loaded CI machine can take seconds to start node; hang cells set their own.
    trialTimeoutMs: 30_000,
    busyPollMs: 10,
    ...opts.extra,
  });
  return { agent, outcomes, fs, slots };
}

/**
 * The invariant of every fault-matrix cell: the committed slot holds a
 * complete install whose tree still matches its marker, and whose bundle hash
 * is one the repository signed for that version.
 */
export async function committedVersion(
  device: Device,
  repo: Repo,
): Promise<{ version: string; slot: SlotName; verified: boolean; reason: string }> {
  const slots = new HostAppSlots(device.slotsDir, new DurableFs());
  const { pointer, markers } = await slots.status();
  const slot = pointer.committed;
  const m = markers[slot];
  if (pointer.trial !== undefined)
    return { version: '?', slot, verified: false, reason: 'a trial is still pending' };
  if (m === undefined)
    return { version: '0.0.0', slot, verified: false, reason: 'committed slot has no install' };
  const digest = await treeDigest(slots.dirOf(slot));
  if (digest !== m.treeDigest)
    return { version: m.version, slot, verified: false, reason: 'tree does not match its marker' };
  const targets = JSON.parse(
    await readFile(
      join(
        repo.ctx.repoDir,
        'metadata',
        `${String(await latestTargetsVersion(repo))}.targets.json`,
      ),
      'utf8',
    ),
  ) as {
    signed: {
      targets: Record<
        string,
        { hashes: { sha256: string }; custom?: { vigil?: { version: string } } }
      >;
    };
  };
  const signed = Object.values(targets.signed.targets).some(
    (t) => t.hashes.sha256 === m.sha256 && t.custom?.vigil?.version === m.version,
  );
  return {
    version: m.version,
    slot,
    verified: signed,
    reason: signed ? 'ok' : 'bundle hash not signed by the repository',
  };
}

async function latestTargetsVersion(repo: Repo): Promise<number> {
  const ts = JSON.parse(
    await readFile(join(repo.ctx.repoDir, 'metadata', 'timestamp.json'), 'utf8'),
  ) as { signed: { meta: Record<string, { version: number }> } };
  const snapV = ts.signed.meta['snapshot.json']?.version ?? 0;
  const snap = JSON.parse(
    await readFile(join(repo.ctx.repoDir, 'metadata', `${String(snapV)}.snapshot.json`), 'utf8'),
  ) as { signed: { meta: Record<string, { version: number }> } };
  return snap.signed.meta['targets.json']?.version ?? 0;
}

/** Run `vigil ota ARGV...` in process, capturing its output. */
export async function vigilOta(
  argv: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await command.run({
    argv,
    env,
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
  });
  return { code, out, err };
}

/** What a simulated OS bundle does once booted ('bad-signature': RAUC refuses to install it). */
export type OsBehaviour = 'healthy' | 'unhealthy' | 'hang' | 'bad-signature';

/** A simulated RAUC bundle's bytes: "rauc-bundle <version> <behaviour>", then padding. */
export const osBundle = (version: string, behaviour: OsBehaviour = 'healthy'): Buffer =>
  Buffer.from(`rauc-bundle ${version} ${behaviour}\n${'x'.repeat(4096)}`);

/**
 * A Pi card for OS updates: the boot FAT (autoboot.txt and the state of the project's RAUC
 * backend) and what each root slot holds. The firmware follows autoboot.txt and the one-shot
 * tryboot flag as the Pi does (`powerOn`). RAUC is simulated at its interface to the backend
 * (`rauc`: install marks the target bad, writes it, marks it good and primary, as RAUC 1.8
 * does), and `bootPort` reboots through the backend as the hub does on a board
 * (bin/hub-os.ts).
 */
export class SimCard {
  readonly slots: Record<CardSlot, { version: string; behaviour: OsBehaviour }> = {
    a: { version: '1.0.0', behaviour: 'healthy' },
    b: { version: '', behaviour: 'healthy' },
  };
  booted: { slot: CardSlot; tryboot: boolean } = { slot: 'a', tryboot: false };
  /** The firmware's one-shot flag, consumed by the next power-on. */
  trybootFlag = false;
  reboots = 0;
  /** The first reboot asked of the firmware: through tryboot ('trial') or not. */
  readonly firstReboot: Promise<'trial' | 'plain'>;
  /** Versions RAUC installed, in order. */
  readonly installs: string[] = [];
  /** `rauc status mark-*` calls, in order ('good booted', 'bad booted', 'bad other'). */
  readonly marks: string[] = [];
  /** Called after each install, before the agent reboots. */
  onInstall: () => void = () => undefined;
  readonly backend: RaucBootBackend;
  /** The boot FAT holding autoboot.txt. */
  readonly dir: string;
  readonly #rebooted: (how: 'trial' | 'plain') => void;

  /** A card as the image ships it (slot A committed) with its boot FAT at `dir`. */
  static async create(dir: string): Promise<SimCard> {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'autoboot.txt'), autobootTxt('a'));
    return new SimCard(dir);
  }

  private constructor(dir: string) {
    this.dir = dir;
    let fire!: (how: 'trial' | 'plain') => void;
    this.firstReboot = new Promise((r) => (fire = r));
    this.#rebooted = fire;
    this.backend = new RaucBootBackend({
      selectorDir: dir,
      fs: new DurableFs(),
      firmware: {
        booted: () =>
          Promise.resolve({
            partition: BOOT_PARTITIONS[this.booted.slot],
            tryboot: this.booted.tryboot,
          }),
        reboot: (tryboot) => {
          this.trybootFlag = tryboot;
          this.reboots++;
          this.#rebooted(tryboot ? 'trial' : 'plain');
          return Promise.resolve();
        },
      },
    });
  }

  /** Power on / reset: the firmware reads autoboot.txt and consumes the flag. */
  async powerOn(): Promise<void> {
    const ab = parseAutoboot(await readFile(join(this.dir, 'autoboot.txt'), 'utf8'));
    const part = this.trybootFlag ? ab.tryboot : ab.normal;
    this.booted = { slot: part === BOOT_PARTITIONS.a ? 'a' : 'b', tryboot: this.trybootFlag };
    this.trybootFlag = false;
  }

  running(): { version: string; behaviour: OsBehaviour } {
    return this.slots[this.booted.slot];
  }

  /** The slot a plain boot starts (autoboot.txt's [all]). */
  committed(): Promise<CardSlot> {
    return this.backend.committed();
  }

  readonly rauc: RaucPort = {
    install: async (bundle) => {
      const text = (await readFile(bundle, 'utf8')).split('\n')[0] ?? '';
      const [, version = '', behaviour = 'healthy'] = text.split(' ');
      if (behaviour === 'bad-signature')
        throw new RaucError('rauc install: signature verification failed', 'signature');
      const target: CardSlot = this.booted.slot === 'a' ? 'b' : 'a';
      const name = target.toUpperCase();
      this.installs.push(version);
      await this.backend.handle(['set-state', name, 'bad']);
      this.slots[target] = { version, behaviour: behaviour as OsBehaviour };
      // RAUC 1.8 after writing: "Marking target slot as bootable", then primary
      await this.backend.handle(['set-state', name, 'good']);
      await this.backend.handle(['set-primary', name]);
      this.onInstall();
    },
    status: (): Promise<RaucStatus> => Promise.reject(new Error('not used')),
    markGood: async () => {
      this.marks.push('good booted');
      await this.backend.handle(['set-state', this.booted.slot.toUpperCase(), 'good']);
    },
    markBad: async (which) => {
      this.marks.push(`bad ${which}`);
      const booted = this.booted.slot;
      const slot = which === 'booted' ? booted : booted === 'a' ? 'b' : 'a';
      await this.backend.handle(['set-state', slot.toUpperCase(), 'bad']);
    },
  };

  /** The hub's boot port on a board (bin/hub-os.ts): every reboot goes through the backend. */
  readonly bootPort: OsBootPort = {
    isTrialBoot: () => Promise.resolve(this.booted.tryboot),
    rebootIntoTrial: async () => {
      await this.backend.rebootIntoPrimary();
    },
    reboot: async () => {
      await this.backend.rebootIntoPrimary();
    },
  };
}
