/**
 * OS updates on the device: the same signed channel as app bundles, RAUC as
 * the slot engine.
 *
 *   check():   refresh TUF → pick the newest `kind: rootfs` target → download
 *              (resumable, length and hashes verified: a tampered bundle never
 *              reaches RAUC) → wait until not busy → `rauc install` (RAUC checks
 *              the CMS signature and writes the inactive slot pair; the backend
 *              records the trial) → reboot once into the trial slot (tryboot).
 *   confirm(): at every start. On a trial boot: the health check, then
 *              `rauc status mark-good` (the backend commits autoboot.txt) or
 *              `mark-bad` and a plain reboot (the firmware boots the committed
 *              slot). On a normal boot after a trial that never confirmed
 *              (watchdog reset, power cut, hang): the trial counts as rolled back.
 *
 * The trial record (pending trial, bad versions) must be seen by both slots, so
 * the committed slot reports a rollback: the CLI keeps it on the boot FAT.
 */
import { readdir, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { sleep } from '../base/async.js';
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import { SILENT } from '../base/logger.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { BusyPort, HealthCheck, OtaOutcome, OutcomeReporter } from './agent.js';
import { channelClient, pickCandidate, targetUrl } from './agent.js';
import { DownloadError, downloadTarget, fileMatches } from './download.js';
import type { RaucPort } from './rauc.js';
import { RaucError } from './rauc.js';
import type { Transport } from './transport.js';
import { VerifyError } from './verify.js';

/** The boot side the agent needs: is this a trial boot, and the reboots. */
export interface OsBootPort {
  /** True when the firmware booted the trial slot through the one-shot tryboot flag. */
  isTrialBoot(): Promise<boolean>;
  /** Reboot once into the slot RAUC made primary (the trial). */
  rebootIntoTrial(): Promise<void>;
  /** Plain reboot: the firmware boots the committed slot. */
  reboot(): Promise<void>;
}

const StateSchema = z.object({
  format: z.literal('vigil-os-agent/1'),
  timeFloor: z.string().optional(),
  /** The OS version installed and rebooted into for its trial, and what ran before. */
  pending: z.object({ version: z.string(), from: z.string() }).optional(),
  bad: z.array(z.string()).default([]),
});
type OsAgentState = z.infer<typeof StateSchema>;

/** Free space kept on the download volume beyond the bundle (the hub's recordings). */
export const DOWNLOAD_RESERVE_BYTES = 64 * 2 ** 20;

export interface OsAgentOptions {
  /** metadata/ (and downloads/ and os-agent.json unless the options below say otherwise). */
  readonly stateDir: string;
  /**
   * Where a bundle is downloaded, asked at each check: on a card the data volume (the root
   * filesystem has no room for a whole OS), undefined while it is not mounted (the update
   * waits). Default: `stateDir/downloads`. The agent owns the directory: anything in it that
   * is not the download in progress is removed.
   */
  readonly downloadDir?: () => string | undefined;
  /** Bytes free for an unprivileged writer under a directory (default: statfs). */
  readonly freeBytes?: (dir: string) => Promise<number>;
  /** Free space left beyond the bundle (default DOWNLOAD_RESERVE_BYTES). */
  readonly reserveBytes?: number;
  /**
   * The trial record (pending version, bad versions). It must outlive a slot switch, so on
   * a card it sits on the boot FAT both slots mount (the CLI: /boot/firmware/vigil-os.json).
   */
  readonly stateFile?: string;
  readonly fs: DurableFs;
  readonly transport: Transport;
  readonly repoUrl: string;
  readonly channel: string;
  readonly rauc: RaucPort;
  readonly boot: OsBootPort;
  readonly health: HealthCheck;
  readonly busy: BusyPort;
  readonly reporter: OutcomeReporter;
  /** The OS version of the running slot (/etc/vigil/os-version of the booted root). */
  readonly runningVersion: () => Promise<string>;
  readonly now?: () => Date;
  readonly logger?: Logger;
  readonly trialTimeoutMs?: number;
  readonly busyPollMs?: number;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function statfsFree(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

const mib = (bytes: number): string => String(Math.ceil(bytes / 2 ** 20));

export class OsUpdateAgent {
  readonly #o: OsAgentOptions;
  readonly #log: Logger;

  constructor(o: OsAgentOptions) {
    this.#o = o;
    this.#log = (o.logger ?? SILENT).child('ota-os');
  }

  get #statePath(): string {
    return this.#o.stateFile ?? join(this.#o.stateDir, 'os-agent.json');
  }

  async #state(): Promise<OsAgentState> {
    const b = await this.#o.fs.readIfExists(this.#statePath);
    if (b === undefined) return { format: 'vigil-os-agent/1', bad: [] };
    try {
      return StateSchema.parse(JSON.parse(b.toString('utf8')));
    } catch (e) {
      // On a card this file sits on the boot FAT, which a power cut can leave repaired by
      // fsck with the file emptied (the twin's CI run saw a 0-byte file after a cut in the
      // RAUC write). Refusing to go on would stop OS updates for good; starting afresh loses
      // at most a pending trial's report and the versions not to retry (RAUC's own slot
      // states and the firmware's one-shot flag still decide what boots), like the
      // bootloader backend's torn vigil-ab.json. The next write replaces the file.
      this.#log.warn('OS update state unreadable: starting afresh', {
        file: this.#statePath,
        bytes: b.length,
        error: reasonOf(e),
      });
      return { format: 'vigil-os-agent/1', bad: [] };
    }
  }

  async #writeState(s: OsAgentState): Promise<void> {
    await this.#o.fs.ensureDir(dirname(this.#statePath));
    await this.#o.fs.writeFileAtomic(this.#statePath, `${JSON.stringify(s)}\n`, 'ota-os-state');
  }

  async #report(o: OtaOutcome): Promise<OtaOutcome> {
    this.#log.info('outcome', { ...o });
    try {
      await this.#o.reporter.report(o);
    } catch (e) {
      this.#log.warn('outcome report failed', { error: reasonOf(e) });
    }
    return o;
  }

  /**
   * Run at every start, before any update check: settle a trial. Returns the outcome
   * when there was one to settle ('restarting' after a failed trial's reboot request).
   */
  async confirm(signal?: AbortSignal): Promise<OtaOutcome | undefined> {
    const state = await this.#state();
    const pending = state.pending;
    if (pending === undefined) return undefined;
    const running = await this.#o.runningVersion();
    const trial = await this.#o.boot.isTrialBoot();
    if (!trial || running !== pending.version) {
      // The firmware brought the committed slot back: the trial hung (watchdog), lost
      // power, or never booted. RAUC forgets the trial slot's primary status too.
      // The trial slot (now the other one) is bad: RAUC and the backend forget the trial.
      await this.#o.rauc.markBad('other').catch((e: unknown) => {
        this.#log.warn('rauc mark-bad other failed', { error: reasonOf(e) });
      });
      await this.#writeState({
        ...state,
        pending: undefined,
        bad: [...new Set([...state.bad, pending.version])],
      });
      return this.#report({
        kind: 'rolled-back',
        version: pending.version,
        to: running,
        reason:
          'the new OS did not confirm its health before a reset (hang stopped by the watchdog, crash, or power loss)',
      });
    }
    const timeoutMs = this.#o.trialTimeoutMs ?? 300_000;
    const deadline = AbortSignal.timeout(timeoutMs);
    const both = signal ? AbortSignal.any([signal, deadline]) : deadline;
    let reason: string | undefined;
    try {
      const r = await this.#o.health.check({ slotDir: '/', version: running, signal: both });
      if (!r.ok)
        reason = `health check failed: ${
          Object.entries(r.checks)
            .filter(([, c]) => !c.ok)
            .map(([k, c]) => `${k}${c.detail ? ` (${c.detail})` : ''}`)
            .join(', ') || 'unhealthy'
        }`;
    } catch (e) {
      reason = reasonOf(e);
    }
    if (reason === undefined) {
      await this.#o.rauc.markGood();
      await this.#writeState({ ...state, pending: undefined });
      return this.#report({ kind: 'committed', version: running, from: pending.from });
    }
    this.#log.warn('the new OS failed its health check; back to the committed slot', { reason });
    await this.#o.rauc.markBad('booted');
    await this.#writeState({
      ...state,
      pending: undefined,
      bad: [...new Set([...state.bad, pending.version])],
    });
    const o = await this.#report({
      kind: 'rolled-back',
      version: pending.version,
      to: pending.from,
      reason,
    });
    await this.#o.boot.reboot();
    return o;
  }

  /** Remove everything in the download directory but `keep` and its `.part`. */
  async #clearDownloads(dir: string, keep?: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const p = join(dir, name);
      if (keep !== undefined && (p === keep || p === `${keep}.part`)) continue;
      await rm(p, { recursive: true, force: true });
    }
  }

  /** Why the bundle cannot be downloaded into `dir` (one line), or undefined when it fits. */
  async #noRoom(
    dir: string,
    file: string,
    length: number,
    version: string,
  ): Promise<string | undefined> {
    const whole = await sizeOf(file);
    const have = whole === length ? whole : Math.min(await sizeOf(`${file}.part`), length);
    const need = length - have + (this.#o.reserveBytes ?? DOWNLOAD_RESERVE_BYTES);
    const free = await (this.#o.freeBytes ?? statfsFree)(dir);
    if (have === length || free >= need) return undefined;
    return `OS update ${version} (${mib(length)} MiB) does not fit in ${dir}: ${mib(free)} MiB free, ${mib(need)} MiB needed`;
  }

  /** One OS update check. Expected failures are outcomes, not exceptions. */
  async check(signal?: AbortSignal): Promise<OtaOutcome> {
    const installed = await this.#o.runningVersion();
    const state = await this.#state();
    const now = (this.#o.now ?? (() => new Date()))();
    const { client, reference, advancesFloor } = channelClient(
      this.#o,
      state.timeFloor,
      now,
      signal,
    );
    let trusted;
    try {
      trusted = await client.refresh();
    } catch (e) {
      if (!(e instanceof VerifyError)) throw e;
      return this.#report(
        e.failure === 'fetch'
          ? { kind: 'failed', reason: e.message, version: installed }
          : { kind: 'refused', reason: e.message, failure: e.failure, version: installed },
      );
    }
    if (advancesFloor) await this.#writeState({ ...state, timeFloor: reference.toISOString() });
    const cand = pickCandidate(trusted.targets, this.#o.channel, 'rootfs', installed, state.bad);
    if (cand === undefined) return { kind: 'up-to-date', version: installed };
    this.#log.info('OS update available', { from: installed, to: cand.version });
    const downloads = (this.#o.downloadDir ?? (() => join(this.#o.stateDir, 'downloads')))();
    if (downloads === undefined)
      return this.#report({
        kind: 'failed',
        reason: `OS update ${cand.version} waits: the data volume (where it is downloaded) is not mounted`,
        version: installed,
      });
    await this.#o.fs.ensureDir(downloads);
    const file = join(downloads, `${cand.sha256}.raucb`);
    // what another target left (an older candidate's half download) goes first
    await this.#clearDownloads(downloads, file);
    const noRoom = await this.#noRoom(downloads, file, cand.target.length, cand.version);
    if (noRoom !== undefined) {
      await this.#clearDownloads(downloads);
      return this.#report({ kind: 'failed', reason: noRoom, version: installed });
    }
    try {
      await downloadTarget({
        transport: this.#o.transport,
        fs: this.#o.fs,
        url: targetUrl(this.#o.repoUrl, cand, trusted.root.consistent_snapshot),
        dest: file,
        target: cand.target,
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (!(e instanceof DownloadError)) throw e;
      // a refused download is gone; an interrupted one stays and resumes at the next check
      if (e.failure !== 'fetch') await this.#clearDownloads(downloads);
      return this.#report(
        e.failure === 'fetch'
          ? { kind: 'failed', reason: reasonOf(e), version: installed }
          : { kind: 'refused', reason: reasonOf(e), failure: e.failure, version: installed },
      );
    }
    // Never cut a recording or a live session: install and reboot only when idle.
    let waited = false;
    while (await this.#o.busy.isBusy()) {
      if (!waited) this.#log.info('OS update staged; waiting for the recording to finish');
      waited = true;
      await sleep(this.#o.busyPollMs ?? 5000, signal);
    }
    // After a wait for a recording the file is checked again right before RAUC sees it (it sat
    // on disk meanwhile); straight after its download (hashed as it arrived) it is not read a
    // third time: RAUC checks the bundle's signature and dm-verity hashes as it installs.
    if (waited && !(await fileMatches(file, cand.target))) {
      await this.#clearDownloads(downloads);
      return this.#report({
        kind: 'refused',
        reason: 'the download changed on disk before install',
        failure: 'hash',
        version: installed,
      });
    }
    try {
      await this.#o.rauc.install(file, signal);
    } catch (e) {
      await this.#clearDownloads(downloads);
      if (!(e instanceof RaucError)) throw e;
      if (e.failure !== 'tool') {
        // RAUC refused the bundle itself (signature, compatible): never retried
        const after = await this.#state();
        await this.#writeState({ ...after, bad: [...new Set([...after.bad, cand.version])] });
      }
      return this.#report(
        e.failure === 'signature'
          ? { kind: 'refused', reason: e.message, failure: 'signature', version: installed }
          : { kind: 'failed', reason: e.message, version: installed },
      );
    }
    await this.#clearDownloads(downloads);
    const after = await this.#state();
    await this.#writeState({ ...after, pending: { version: cand.version, from: installed } });
    this.#log.info('OS installed into the inactive slot; rebooting into its trial', {
      version: cand.version,
    });
    await this.#o.boot.rebootIntoTrial();
    return { kind: 'restarting', version: cand.version, from: installed };
  }
}
