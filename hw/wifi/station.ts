/**
 * The hub as a Wi-Fi client of the home network: wpa_supplicant run as our own
 * child (no dbus, no NetworkManager: see docs/decisions.md) and driven through
 * its control socket; scanning with `iw`, which also works while the radio is
 * still an access point (`scan ap-force`), so the hub can check the home
 * network is in range *before* tearing the hotspot down.
 *
 * Port: `Station`. Real adapter: `WpaSupplicantStation`. Fake: hw/wifi/fake.ts.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { pathExists } from '../os/fs.js';
import { join } from 'node:path';
import { sleep } from '../../base/async.js';
import { VigilError } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import { SILENT } from '../../base/logger.js';
import type { HostPaths } from '../os/host-paths.js';
import { run as defaultRun, spawnProcess as defaultSpawn } from '../os/run.js';
import type { RunOptions, RunResult, Spawned, SpawnOptions } from '../os/run.js';
import { PassphraseSchema, SsidSchema, renderWpaSupplicantConf } from './conf.js';
import { WpaCtrl } from './ctrl.js';
import type { CtrlEvent } from './ctrl.js';

export interface ScanResult {
  readonly bssid: string;
  readonly ssid: string;
  readonly signalDbm: number | undefined;
  readonly freqMhz: number | undefined;
  /** RSN (WPA2/WPA3) advertised. */
  readonly rsn: boolean;
}

export interface WifiCredentials {
  readonly ssid: string;
  readonly passphrase: string;
}

export type JoinFailure =
  | 'EWIFI_WRONG_PASSWORD'
  | 'EWIFI_NOT_FOUND'
  | 'EWIFI_TIMEOUT'
  | 'EWIFI_START'
  | 'EWIFI_INPUT'
  /** Associated, but DHCP left no IPv4 address on the interface. */
  | 'EWIFI_DHCP';

export class WifiJoinError extends VigilError {
  declare readonly code: JoinFailure;
  constructor(code: JoinFailure, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'WifiJoinError';
  }
}

export interface JoinResult {
  readonly bssid: string | undefined;
  readonly address: string | undefined;
}

export interface Station {
  scan(): Promise<ScanResult[]>;
  join(creds: WifiCredentials): Promise<JoinResult>;
  leave(): Promise<void>;
  readonly connected: boolean;
}

/** Decode iw's SSID escaping ("\x20" and friends) back to a string. */
function unescapeIw(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (s[i] === '\\' && s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      bytes.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (c < 0x80) bytes.push(c);
    else bytes.push(...Buffer.from(s[i] ?? '', 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** How often a busy scan is retried, and the pause between tries. */
export const SCAN_BUSY_RETRIES = 5;
export const SCAN_BUSY_DELAY_MS = 1000;
export const SCAN_TIMEOUT_MS = 45_000;

function scanErrorText(e: unknown): string {
  const stderr = (e as { stderr?: unknown }).stderr;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof stderr === 'string' && stderr.trim() !== '' && !msg.includes(stderr.trim())
    ? `${msg} (${stderr.trim().split('\n').slice(-1)[0] ?? ''})`
    : msg;
}

/** Parse `iw dev <if> scan` output. */
export function parseIwScan(text: string): ScanResult[] {
  const out: ScanResult[] = [];
  let cur:
    | {
        bssid: string;
        ssid: string;
        signalDbm: number | undefined;
        freqMhz: number | undefined;
        rsn: boolean;
      }
    | undefined;
  for (const line of text.split('\n')) {
    const bss = /^BSS ([0-9a-f:]{17})/i.exec(line);
    if (bss) {
      if (cur) out.push(cur);
      cur = {
        bssid: (bss[1] ?? '').toLowerCase(),
        ssid: '',
        signalDbm: undefined,
        freqMhz: undefined,
        rsn: false,
      };
      continue;
    }
    if (!cur) continue;
    const t = line.trim();
    let m: RegExpExecArray | null;
    if ((m = /^SSID: ?(.*)$/.exec(t))) cur.ssid = unescapeIw(m[1] ?? '');
    else if ((m = /^signal: (-?[\d.]+) dBm/.exec(t))) cur.signalDbm = Number(m[1]);
    else if ((m = /^freq: (\d+)/.exec(t))) cur.freqMhz = Number(m[1]);
    else if (/^RSN:/.test(t)) cur.rsn = true;
  }
  if (cur) out.push(cur);
  return out;
}

export interface WpaSupplicantStationDeps {
  readonly paths: HostPaths;
  readonly interface: string;
  readonly countryCode: string;
  readonly logger?: Logger;
  readonly run?: (cmd: string, args: readonly string[], opts?: RunOptions) => Promise<RunResult>;
  readonly spawn?: (cmd: string, args: readonly string[], opts?: SpawnOptions) => Spawned;
  readonly wpaSupplicant?: string;
  readonly iw?: string;
  readonly ip?: string;
  readonly netns?: string;
  /** After association: argv of a DHCP client run to completion (e.g. busybox udhcpc), or a static CIDR. */
  readonly addressing?: { readonly dhcp: readonly string[] } | { readonly static: string } | 'none';
  readonly joinTimeoutMs?: number;
}

export class WpaSupplicantStation implements Station {
  readonly #d: WpaSupplicantStationDeps & { logger: Logger };
  readonly #dir: string;
  #child: Spawned | undefined;
  #ctrl: WpaCtrl | undefined;
  #connected = false;
  /** The address we configured on the interface (removed again on leave). */
  #assigned: string | undefined;

  constructor(deps: WpaSupplicantStationDeps) {
    this.#d = { ...deps, logger: deps.logger ?? SILENT };
    this.#dir = deps.paths.host('/run/vigil/station');
  }

  get connected(): boolean {
    return this.#connected;
  }

  get #run() {
    return this.#d.run ?? defaultRun;
  }

  #wrap(cmd: string, args: readonly string[]): [string, string[]] {
    const ns = this.#d.netns;
    return ns === undefined
      ? [cmd, [...args]]
      : [this.#d.ip ?? 'ip', ['netns', 'exec', ns, cmd, ...args]];
  }

  async scan(): Promise<ScanResult[]> {
    const iface = this.#d.interface;
    const iw = this.#d.iw ?? 'iw';
    // ap-force: allowed while the interface is an access point (the hotspot is still up).
    // "busy" (-16: another scan, or the AP still settling) is retried; anything else falls
    // back to a plain scan, and if that fails too the error names both.
    const [cmd, args] = this.#wrap(iw, ['dev', iface, 'scan', 'ap-force']);
    let first: unknown;
    for (let attempt = 1; attempt <= SCAN_BUSY_RETRIES; attempt++) {
      try {
        // a full 2.4 GHz sweep while beaconing is slow on a loaded system (20 s was not enough)
        const r = await this.#run(cmd, args, { timeoutMs: SCAN_TIMEOUT_MS });
        return parseIwScan(r.stdout.toString('utf8'));
      } catch (e) {
        first = e;
        if (!/\(-16\)|busy/i.test(scanErrorText(e))) break;
        await new Promise((res) => setTimeout(res, SCAN_BUSY_DELAY_MS));
      }
    }
    const [c2, a2] = this.#wrap(iw, ['dev', iface, 'scan']);
    let r: RunResult;
    try {
      r = await this.#run(c2, a2, { timeoutMs: 20_000 });
    } catch (e) {
      throw new VigilError(
        'EWIFI_SCAN',
        `cannot scan on ${iface}: ap-force: ${scanErrorText(first)}; plain: ${scanErrorText(e)}`,
        { cause: e },
      );
    }
    return parseIwScan(r.stdout.toString('utf8'));
  }

  async join(creds: WifiCredentials): Promise<JoinResult> {
    if (!SsidSchema.safeParse(creds.ssid).success)
      throw new WifiJoinError(
        'EWIFI_INPUT',
        'home network name must be 1-32 bytes without control characters',
      );
    const pp = PassphraseSchema.safeParse(creds.passphrase);
    if (!pp.success)
      throw new WifiJoinError(
        'EWIFI_INPUT',
        pp.error.issues[0]?.message ?? 'invalid Wi-Fi password',
      );
    await this.leave();
    const ctrlDir = join(this.#dir, 'ctrl');
    await mkdir(ctrlDir, { recursive: true, mode: 0o700 });
    const confPath = join(this.#dir, 'wpa_supplicant.conf');
    await writeFile(
      confPath,
      renderWpaSupplicantConf({ ctrlDir, countryCode: this.#d.countryCode, network: creds }),
      { mode: 0o600 },
    );
    const [cmd, args] = this.#wrap(this.#d.wpaSupplicant ?? 'wpa_supplicant', [
      '-i',
      this.#d.interface,
      '-D',
      'nl80211',
      '-c',
      confPath,
    ]);
    const child = (this.#d.spawn ?? defaultSpawn)(cmd, args, { stdout: 'pipe', stderr: 'pipe' });
    this.#child = child;
    let out = '';
    child.child.stdout?.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2048)));
    child.child.stderr?.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2048)));
    const timeoutMs = this.#d.joinTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const state = { exited: false };
    void child.exited.then(() => (state.exited = true));
    try {
      const ctrlPath = join(ctrlDir, this.#d.interface);
      while (!this.#ctrl) {
        if (state.exited)
          throw new WifiJoinError(
            'EWIFI_START',
            `wpa_supplicant exited: ${out.trim().split('\n').slice(-2).join(' | ') || 'no output'}`,
          );
        if (Date.now() > deadline)
          throw new WifiJoinError('EWIFI_START', 'wpa_supplicant control socket did not appear');
        if (await pathExists(ctrlPath)) {
          try {
            this.#ctrl = await WpaCtrl.open(ctrlPath, join(this.#dir, 'client'), 2000);
          } catch {
            /* not ready yet */
          }
        }
        if (!this.#ctrl) await sleep(100);
      }
      const ctrl = this.#ctrl;
      const outcome = new Promise<{ bssid: string | undefined }>((resolve, reject) => {
        let notFound = 0;
        const timer = setTimeout(
          () => {
            cleanup();
            reject(
              new WifiJoinError(
                'EWIFI_TIMEOUT',
                `could not join "${creds.ssid}" within ${Math.round(timeoutMs / 1000)} s`,
              ),
            );
          },
          Math.max(0, deadline - Date.now()),
        );
        const onEvent = (ev: CtrlEvent): void => {
          if (ev.name === 'CTRL-EVENT-CONNECTED') {
            cleanup();
            resolve({ bssid: /([0-9a-f]{2}(:[0-9a-f]{2}){5})/i.exec(ev.args)?.[1]?.toLowerCase() });
          } else if (
            ev.name === 'CTRL-EVENT-SSID-TEMP-DISABLED' &&
            /reason=WRONG_KEY/.test(ev.args)
          ) {
            cleanup();
            reject(
              new WifiJoinError(
                'EWIFI_WRONG_PASSWORD',
                `the password for "${creds.ssid}" was rejected by the access point`,
              ),
            );
          } else if (ev.name === 'CTRL-EVENT-NETWORK-NOT-FOUND') {
            notFound += 1;
            if (notFound >= 3) {
              cleanup();
              reject(
                new WifiJoinError(
                  'EWIFI_NOT_FOUND',
                  `no network named "${creds.ssid}" is in range`,
                ),
              );
            }
          }
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          ctrl.off('event', onEvent);
        };
        ctrl.on('event', onEvent);
      });
      await ctrl.attach();
      // It may have connected before ATTACH: ask once.
      const st = await ctrl.request('STATUS');
      const result = /^wpa_state=COMPLETED$/m.test(st)
        ? { bssid: /^bssid=(.+)$/m.exec(st)?.[1] }
        : await outcome;
      void outcome.catch(() => undefined);
      // the supplicant has the key in memory; the file is not needed any more
      await rm(confPath, { force: true });
      const address = await this.#address();
      this.#assigned = address;
      this.#connected = true;
      this.#d.logger.info('joined home network', {
        ssid: creds.ssid,
        bssid: result.bssid,
        address,
      });
      return { bssid: result.bssid, address };
    } catch (e) {
      await this.leave();
      throw e;
    }
  }

  async #address(): Promise<string | undefined> {
    const a = this.#d.addressing ?? 'none';
    if (a === 'none') return undefined;
    const ip = this.#d.ip ?? 'ip';
    const ns = this.#d.netns;
    if ('static' in a) {
      await this.#run(
        ip,
        [
          ...(ns !== undefined ? ['-n', ns] : []),
          'addr',
          'add',
          a.static,
          'dev',
          this.#d.interface,
        ],
        { timeoutMs: 10_000 },
      );
      return a.static;
    }
    const [first, ...rest] = a.dhcp;
    if (first === undefined) return undefined;
    const [cmd, args] = this.#wrap(first, rest);
    const dhcp = await this.#run(cmd, args, { timeoutMs: 30_000 });
    const r = await this.#run(
      ip,
      [
        ...(ns !== undefined ? ['-n', ns] : []),
        '-4',
        '-o',
        'addr',
        'show',
        'dev',
        this.#d.interface,
      ],
      { timeoutMs: 10_000 },
    );
    const address = /inet (\S+)/.exec(r.stdout.toString())?.[1];
    if (address === undefined) {
      // a lease without an address: the client's event script did not configure it (udhcpc
      // reports the lease and exits 0 even when it cannot run its script)
      const said = `${dhcp.stdout.toString()}\n${dhcp.stderr}`
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '')
        .slice(-3)
        .join(' | ');
      throw new WifiJoinError(
        'EWIFI_DHCP',
        `no IPv4 address on ${this.#d.interface} after DHCP (${first}: ${said || 'no output'})`,
      );
    }
    return address;
  }

  async leave(): Promise<void> {
    await this.#ctrl?.close();
    this.#ctrl = undefined;
    const c = this.#child;
    this.#child = undefined;
    await c?.stop(2000);
    this.#connected = false;
    const assigned = this.#assigned;
    this.#assigned = undefined;
    if (assigned?.includes('/') === true) {
      // leaving the network: its address must not stay (a next join adds it again)
      const ns = this.#d.netns;
      await this.#run(
        this.#d.ip ?? 'ip',
        [
          ...(ns !== undefined ? ['-n', ns] : []),
          'addr',
          'del',
          assigned,
          'dev',
          this.#d.interface,
        ],
        { timeoutMs: 10_000 },
      ).catch(() => undefined);
    }
    await rm(this.#dir, { recursive: true, force: true });
  }
}
