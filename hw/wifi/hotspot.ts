/**
 * The pairing hotspot: hostapd (WPA2-PSK, CCMP) + dnsmasq (DHCP only) on the
 * Wi-Fi interface, run as supervised children, with station join/leave events
 * read from hostapd's control socket.
 *
 * Port: `Hotspot`. Real adapter: `HostapdHotspot`. Fake: `FakeHotspot`
 * (hw/wifi/fake.ts) for the pairing controller's tests.
 */
import { EventEmitter } from 'node:events';
import { pathExists } from '../os/fs.js';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from '../../base/async.js';
import { VigilError } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import { SILENT } from '../../base/logger.js';
import type { HostPaths } from '../os/host-paths.js';
import { run as defaultRun, spawnProcess as defaultSpawn } from '../os/run.js';
import type { RunOptions, RunResult, Spawned, SpawnOptions } from '../os/run.js';
import { renderDnsmasqConf, renderHostapdConf } from './conf.js';
import { WpaCtrl } from './ctrl.js';

export interface HotspotConfig {
  readonly interface: string;
  readonly ssid: string;
  readonly passphrase: string;
  readonly countryCode: string;
  readonly channel?: number;
  /** The hub's address on the hotspot (the frame server listens here). */
  readonly address: string;
  readonly prefixLength: number;
  readonly dhcpStart: string;
  readonly dhcpEnd: string;
}

export type StationEvent = { readonly type: 'joined' | 'left'; readonly mac: string };

export interface HotspotEvents {
  station: [StationEvent];
  /** A child died and could not be restarted: the hotspot is down. */
  failed: [Error];
}

export interface Hotspot extends EventEmitter<HotspotEvents> {
  readonly active: boolean;
  start(config: HotspotConfig): Promise<void>;
  stop(): Promise<void>;
  /** Stations currently associated (MACs). */
  stations(): readonly string[];
}

export class HotspotError extends VigilError {
  constructor(
    code: 'EHOTSPOT_START' | 'EHOTSPOT_STATE' | 'EHOTSPOT_CHILD',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'HotspotError';
  }
}

export interface HostapdHotspotDeps {
  readonly paths: HostPaths;
  readonly logger?: Logger;
  readonly run?: (cmd: string, args: readonly string[], opts?: RunOptions) => Promise<RunResult>;
  readonly spawn?: (cmd: string, args: readonly string[], opts?: SpawnOptions) => Spawned;
  readonly hostapd?: string;
  readonly dnsmasq?: string;
  readonly ip?: string;
  /** Run the children inside this network namespace (tests, system tests). */
  readonly netns?: string;
  /** hostapd driver: nl80211 in production; `none` only for host tests without a radio. */
  readonly driver?: 'nl80211' | 'none';
  readonly startTimeoutMs?: number;
  /** Restarts of a crashed child before the hotspot gives up (backoff doubles from 500 ms). */
  readonly maxRestarts?: number;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export class HostapdHotspot extends EventEmitter<HotspotEvents> implements Hotspot {
  readonly #d: Required<Omit<HostapdHotspotDeps, 'netns' | 'logger'>> & {
    netns?: string;
    logger: Logger;
  };
  readonly #dir: string;
  #config: HotspotConfig | undefined;
  #hostapd: Spawned | undefined;
  #dnsmasq: Spawned | undefined;
  #ctrl: WpaCtrl | undefined;
  #stations = new Set<string>();
  #active = false;
  #restarts = 0;
  #hostapdOut = '';

  constructor(deps: HostapdHotspotDeps) {
    super();
    this.#d = {
      paths: deps.paths,
      logger: deps.logger ?? SILENT,
      run: deps.run ?? defaultRun,
      spawn: deps.spawn ?? defaultSpawn,
      hostapd: deps.hostapd ?? 'hostapd',
      dnsmasq: deps.dnsmasq ?? 'dnsmasq',
      ip: deps.ip ?? 'ip',
      ...(deps.netns !== undefined ? { netns: deps.netns } : {}),
      driver: deps.driver ?? 'nl80211',
      startTimeoutMs: deps.startTimeoutMs ?? 15_000,
      maxRestarts: deps.maxRestarts ?? 3,
    };
    this.#dir = deps.paths.host('/run/vigil/hotspot');
  }

  get active(): boolean {
    return this.#active;
  }

  get runtimeDir(): string {
    return this.#dir;
  }

  stations(): readonly string[] {
    return [...this.#stations];
  }

  #argv(cmd: string, args: readonly string[]): [string, string[]] {
    const ns = this.#d.netns;
    return ns === undefined ? [cmd, [...args]] : [this.#d.ip, ['netns', 'exec', ns, cmd, ...args]];
  }

  async #ipCmd(args: readonly string[]): Promise<void> {
    const ns = this.#d.netns;
    await this.#d.run(this.#d.ip, ns === undefined ? args : ['-n', ns, ...args], {
      timeoutMs: 10_000,
    });
  }

  async start(config: HotspotConfig): Promise<void> {
    if (this.#active) throw new HotspotError('EHOTSPOT_STATE', 'hotspot is already running');
    const log = this.#d.logger;
    const ctrlDir = join(this.#dir, 'ctrl');
    const hostapdConf = renderHostapdConf({
      interface: config.interface,
      ssid: config.ssid,
      passphrase: config.passphrase,
      countryCode: config.countryCode,
      ctrlDir,
      ...(config.channel !== undefined ? { channel: config.channel } : {}),
    }).replace('driver=nl80211', `driver=${this.#d.driver}`);
    const dnsmasqConf = renderDnsmasqConf({
      interface: config.interface,
      address: config.address,
      rangeStart: config.dhcpStart,
      rangeEnd: config.dhcpEnd,
      leaseFile: join(this.#dir, 'dnsmasq.leases'),
    });
    await rm(this.#dir, { recursive: true, force: true });
    await mkdir(ctrlDir, { recursive: true, mode: 0o700 });
    // runtime files on tmpfs, private: hostapd.conf holds the passphrase
    await writeFile(join(this.#dir, 'hostapd.conf'), hostapdConf, { mode: 0o600 });
    await writeFile(join(this.#dir, 'dnsmasq.conf'), dnsmasqConf, { mode: 0o600 });
    this.#config = config;
    this.#stations.clear();
    this.#restarts = 0;
    try {
      await this.#ipCmd(['addr', 'flush', 'dev', config.interface]);
      await this.#ipCmd([
        'addr',
        'add',
        `${config.address}/${config.prefixLength}`,
        'dev',
        config.interface,
      ]);
      await this.#ipCmd(['link', 'set', config.interface, 'up']);
      await this.#startHostapd();
      await this.#startDnsmasq();
    } catch (e) {
      await this.#teardown();
      throw e instanceof HotspotError
        ? e
        : new HotspotError(
            'EHOTSPOT_START',
            `hotspot did not start: ${e instanceof Error ? e.message : String(e)}`,
            { cause: e },
          );
    }
    this.#active = true;
    log.info('hotspot up', {
      ssid: config.ssid,
      interface: config.interface,
      address: config.address,
    });
  }

  async #startHostapd(): Promise<void> {
    const config = this.#config;
    if (!config) throw new HotspotError('EHOTSPOT_STATE', 'no configuration');
    this.#hostapdOut = '';
    // a socket left by a killed hostapd would be probed (and time out) before the new one exists
    await rm(join(this.#dir, 'ctrl', config.interface), { force: true });
    const [cmd, args] = this.#argv(this.#d.hostapd, [join(this.#dir, 'hostapd.conf')]);
    const child = this.#d.spawn(cmd, args, { stdout: 'pipe', stderr: 'pipe' });
    this.#hostapd = child;
    const collect = (b: Buffer): void => {
      // keep a bounded tail for error messages; hostapd never prints the passphrase
      this.#hostapdOut = (this.#hostapdOut + b.toString('utf8')).slice(-4096);
    };
    child.child.stdout?.on('data', collect);
    child.child.stderr?.on('data', collect);
    const state = { exited: false };
    void child.exited.then((r) => {
      state.exited = true;
      this.#onChildExit('hostapd', child, r.exitCode, r.signal);
    });
    const ctrlPath = join(this.#dir, 'ctrl', config.interface);
    const deadline = Date.now() + this.#d.startTimeoutMs;
    for (;;) {
      if (state.exited) {
        const tail = this.#hostapdOut.trim().split('\n').slice(-3).join(' | ');
        throw new HotspotError(
          'EHOTSPOT_START',
          `hostapd exited during start-up: ${tail || 'no output'}`,
        );
      }
      if (Date.now() > deadline)
        throw new HotspotError(
          'EHOTSPOT_START',
          `hostapd did not enable the access point within ${this.#d.startTimeoutMs} ms`,
        );
      if (this.#ctrl === undefined && (await pathExists(ctrlPath))) {
        try {
          this.#ctrl = await WpaCtrl.open(ctrlPath, join(this.#dir, 'client'), 2000);
          this.#ctrl.on('event', (ev) => {
            this.#onEvent(ev.name, ev.args);
          });
          await this.#ctrl.attach();
        } catch {
          await this.#ctrl?.close();
          this.#ctrl = undefined;
        }
      }
      if (this.#ctrl) {
        const status = await this.#ctrl.request('STATUS').catch(() => '');
        if (/^state=ENABLED$/m.test(status)) return;
      }
      await sleep(100);
    }
  }

  async #startDnsmasq(): Promise<void> {
    const [cmd, args] = this.#argv(this.#d.dnsmasq, [
      '--keep-in-foreground',
      `--conf-file=${join(this.#dir, 'dnsmasq.conf')}`,
      '--log-facility=-',
    ]);
    const child = this.#d.spawn(cmd, args, { stdout: 'pipe', stderr: 'pipe' });
    this.#dnsmasq = child;
    let out = '';
    child.child.stderr?.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2048)));
    child.child.stdout?.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2048)));
    // dnsmasq binds its sockets before it settles; a bad config or a busy port makes it exit at once
    const early = await Promise.race([child.exited, sleep(500).then(() => undefined)]);
    if (early !== undefined) {
      throw new HotspotError(
        'EHOTSPOT_START',
        `dnsmasq exited during start-up: ${out.trim().split('\n').slice(-2).join(' | ') || `code ${String(early.exitCode)}`}`,
      );
    }
    void child.exited.then((r) => {
      this.#onChildExit('dnsmasq', child, r.exitCode, r.signal);
    });
  }

  #onEvent(name: string, args: string): void {
    const mac = args.split(' ')[0]?.toLowerCase() ?? '';
    if (!MAC.test(mac)) return;
    if (name === 'AP-STA-CONNECTED') {
      this.#stations.add(mac);
      this.#d.logger.info('station joined', { mac });
      this.emit('station', { type: 'joined', mac });
    } else if (name === 'AP-STA-DISCONNECTED') {
      this.#stations.delete(mac);
      this.#d.logger.info('station left', { mac });
      this.emit('station', { type: 'left', mac });
    }
  }

  #onChildExit(
    which: 'hostapd' | 'dnsmasq',
    child: Spawned,
    exitCode: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    const current = which === 'hostapd' ? this.#hostapd : this.#dnsmasq;
    if (!this.#active || current !== child) return; // stopping, or an old child
    this.#d.logger.warn('hotspot child exited', { child: which, exitCode, signal });
    if (this.#restarts >= this.#d.maxRestarts) {
      void this.#teardown().then(() => {
        this.#active = false;
        this.emit(
          'failed',
          new HotspotError(
            'EHOTSPOT_CHILD',
            `${which} keeps exiting; hotspot stopped after ${this.#restarts} restarts`,
          ),
        );
      });
      return;
    }
    const delay = 500 * 2 ** this.#restarts;
    this.#restarts += 1;
    void sleep(delay).then(async () => {
      if (!this.#active) return;
      try {
        if (which === 'hostapd') {
          await this.#ctrl?.close();
          this.#ctrl = undefined;
          await this.#startHostapd();
        } else await this.#startDnsmasq();
        this.#d.logger.info('hotspot child restarted', { child: which });
      } catch (e) {
        this.#onChildExit(
          which,
          which === 'hostapd' ? (this.#hostapd ?? child) : (this.#dnsmasq ?? child),
          null,
          null,
        );
        this.#d.logger.warn('restart failed', { child: which, error: e });
      }
    });
  }

  async #teardown(): Promise<void> {
    await this.#ctrl?.close();
    this.#ctrl = undefined;
    const h = this.#hostapd;
    const d = this.#dnsmasq;
    this.#hostapd = undefined;
    this.#dnsmasq = undefined;
    await Promise.all([h?.stop(2000), d?.stop(2000)]);
    // Remove only our own address, and only once: a second stop (the pairing controller closes
    // after a handoff) must not take the home network's DHCP address off the same interface.
    const cfg = this.#config;
    this.#config = undefined;
    if (cfg)
      await this.#ipCmd([
        'addr',
        'del',
        `${cfg.address}/${String(cfg.prefixLength)}`,
        'dev',
        cfg.interface,
      ]).catch(() => undefined);
    // the passphrase must not outlive the hotspot
    await rm(this.#dir, { recursive: true, force: true });
    this.#stations.clear();
  }

  async stop(): Promise<void> {
    const was = this.#active;
    this.#active = false;
    await this.#teardown();
    if (was) this.#d.logger.info('hotspot down');
  }
}
