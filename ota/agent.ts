/**
 * The device's update agent. One `check()`:
 *
 *   recover → refresh TUF metadata → pick the newest signed bundle of the
 *   channel → download (resumable, verified) → install into the inactive slot
 *   (marker last) → wait until not busy → trial (probe the new slot's process +
 *   health checks, under a deadline) → commit, or drop the trial (rollback)
 *   → report the outcome.
 *
 * Every durable step goes through DurableFs (numbered crash points), so a
 * crash anywhere leaves either the old committed version or a complete,
 * verified new one; `recover()` at the next start drops any unconfirmed trial
 * (one-shot: a trial that did not reach its commit never becomes current).
 */
import { join } from 'node:path';
import { sleep } from '../base/async.js';
import { z } from 'zod';
import { reasonOf, VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { Logger } from '../base/logger.js';
import { SILENT } from '../base/logger.js';
import { DownloadError, downloadTarget, fileMatches } from './download.js';
import type { Progress } from './download.js';
import type { TargetFile, Targets } from './metadata.js';
import type { TrialProbe } from './probe.js';
import { other } from './slots.js';
import type { SlotName, Slots } from './slots.js';
import type { Transport } from './transport.js';
import { TufClient, VerifyError } from './verify.js';
import { compareVersions, isVersion } from './version.js';

/** Result of the injected health checks (wired by the supervisor). */
export interface HealthReport {
  readonly ok: boolean;
  /** e.g. camera pipeline up, MLS state loads, relay reachable, storage unlocked. */
  readonly checks: Readonly<Record<string, { ok: boolean; detail?: string }>>;
}

export interface HealthCheck {
  check(ctx: { slotDir: string; version: string; signal: AbortSignal }): Promise<HealthReport>;
}

/** Is the hub doing something an update must not cut (a clip being recorded)? */
export interface BusyPort {
  isBusy(): boolean | Promise<boolean>;
}

export type OtaOutcome =
  | { readonly kind: 'up-to-date'; readonly version: string }
  | { readonly kind: 'committed'; readonly version: string; readonly from: string }
  | {
      readonly kind: 'rolled-back';
      readonly version: string;
      readonly to: string;
      readonly reason: string;
    }
  | {
      readonly kind: 'refused';
      readonly reason: string;
      readonly failure: string;
      readonly version: string;
    }
  | { readonly kind: 'failed'; readonly reason: string; readonly version: string }
  /** Restart trials: the new version is staged; the hub restarts into it (not reported). */
  | { readonly kind: 'restarting'; readonly version: string; readonly from: string };

/**
 * How the hub restarts into a staged trial (the real path on a device: the hub
 * exits with a code systemd restarts; the launcher then starts the new slot).
 * Resolves or rejects only if the restart did not happen.
 */
export interface TrialRestarter {
  restartIntoTrial(
    trial: { readonly slot: SlotName; readonly version: string; readonly from: string },
    signal?: AbortSignal,
  ): Promise<void>;
}

/** The last reported outcome, kept (stateDir/outcome.json) until the phone has it. */
export const LastOutcomeSchema = z.object({
  format: z.literal('vigil-ota-outcome/1'),
  at: z.string(),
  outcome: z.record(z.string(), z.unknown()),
  delivered: z.boolean(),
});
export type LastOutcome = z.infer<typeof LastOutcomeSchema>;

/** Where outcomes go (the config group to the phone, wired later). */
export interface OutcomeReporter {
  report(outcome: OtaOutcome): void | Promise<void>;
}

const AgentStateSchema = z.object({
  format: z.literal('vigil-ota-agent/1'),
  /** Highest verified reference time: the clock may go back (no RTC), trust does not. */
  timeFloor: z.string().optional(),
  /** Versions that failed their trial: never retried. */
  bad: z.array(z.string()).default([]),
  /** Interrupted trials per version; at MAX_ATTEMPTS the version counts as bad. */
  attempts: z.record(z.string(), z.number().int()).default({}),
});
type AgentState = z.infer<typeof AgentStateSchema>;

export const MAX_TRIAL_ATTEMPTS = 3;

/** After the trial deadline, how long a health check may take to return its last report. */
const HEALTH_GRACE_MS = 1000;

export interface AgentOptions {
  /** /var/lib/vigil/ota: metadata/, downloads/, agent.json */
  readonly stateDir: string;
  readonly fs: DurableFs;
  readonly slots: Slots;
  readonly transport: Transport;
  /** Repository base URL (serving metadata/ and targets/). */
  readonly repoUrl: string;
  readonly channel: string;
  readonly kind?: 'app';
  /**
   * Version of the tree the image installed (runs while the committed slot is
   * empty): nothing older or equal is installed over it. Default 0.0.0.
   */
  readonly baseVersion?: string;
  readonly probe: TrialProbe;
  readonly health: HealthCheck;
  readonly busy: BusyPort;
  readonly reporter: OutcomeReporter;
  /**
   * Set: trials restart the hub into the new slot (`restartIntoTrial`) and the new
   * hub confirms itself (`confirmTrial`). Unset: the trial runs in this process
   * (probe of the new slot + the health check).
   */
  readonly restart?: TrialRestarter;
  readonly now?: () => Date;
  readonly random?: () => number;
  readonly logger?: Logger;
  readonly onProgress?: (p: Progress) => void;
  /** Deadline for the trial (probe + health): the watchdog. Default 120 s. */
  readonly trialTimeoutMs?: number;
  /** How often to re-ask isBusy() while waiting for a safe moment. Default 5 s. */
  readonly busyPollMs?: number;
  /** Poll interval and relative jitter for `run()`. Default 6 h ± 25 %. */
  readonly intervalMs?: number;
  readonly jitter?: number;
}

/** Interval with jitter in [1 - j, 1 + j]: devices of one fleet spread out. */
export function nextDelay(intervalMs: number, jitter: number, random: () => number): number {
  return Math.max(1000, Math.round(intervalMs * (1 + jitter * (2 * random() - 1))));
}

export interface Candidate {
  readonly name: string;
  readonly version: string;
  readonly target: TargetFile;
  readonly sha256: string;
}

/** The newest bundle of the channel, newer than `installed`, not known bad. */
export function pickCandidate(
  targets: Targets,
  channel: string,
  kind: 'app' | 'rootfs',
  installed: string,
  bad: readonly string[],
): Candidate | undefined {
  let best: Candidate | undefined;
  for (const [name, t] of Object.entries(targets.targets)) {
    const v = t.custom?.vigil;
    if (v === undefined || v.channel !== channel || v.kind !== kind) continue;
    if (!name.startsWith(`${channel}/`) || name.includes('..')) continue;
    if (!isVersion(v.version) || bad.includes(v.version)) continue;
    if (compareVersions(v.version, installed) <= 0) continue; // never downgrade
    const sha256 = t.hashes.sha256;
    if (sha256 === undefined) continue;
    if (best === undefined || compareVersions(v.version, best.version) > 0)
      best = { name, version: v.version, target: t, sha256 };
  }
  return best;
}

/**
 * The channel's TUF client. Expiry is judged at max(now, the newest time the device has
 * trusted), so a clock set back cannot revive expired metadata. Also returns that reference
 * time and whether it is newer than the floor: the caller records it once the refresh succeeded.
 */
export function channelClient(
  o: {
    readonly stateDir: string;
    readonly fs: DurableFs;
    readonly transport: Transport;
    readonly repoUrl: string;
  },
  timeFloor: string | undefined,
  now: Date,
  signal?: AbortSignal,
): { client: TufClient; reference: Date; advancesFloor: boolean } {
  const floor = timeFloor === undefined ? 0 : new Date(timeFloor).getTime();
  const reference = new Date(Math.max(now.getTime(), floor));
  const client = new TufClient({
    dir: join(o.stateDir, 'metadata'),
    fs: o.fs,
    transport: o.transport,
    metadataUrl: `${o.repoUrl.replace(/\/+$/, '')}/metadata`,
    now: () => reference,
    ...(signal ? { signal } : {}),
  });
  return { client, reference, advancesFloor: reference.getTime() > floor };
}

/**
 * Where a target file is fetched (TUF 5.7.3): `<dir>/<sha256>.<file>` when the root says
 * `consistent_snapshot`, else its plain name.
 */
export function targetUrl(
  repoUrl: string,
  cand: Pick<Candidate, 'name' | 'sha256'>,
  consistentSnapshot: boolean,
): string {
  const cut = cand.name.lastIndexOf('/') + 1;
  const file = consistentSnapshot
    ? `${cand.name.slice(0, cut)}${cand.sha256}.${cand.name.slice(cut)}`
    : cand.name;
  return `${repoUrl.replace(/\/+$/, '')}/targets/${file}`;
}

export class OtaAgent {
  readonly #o: AgentOptions;
  readonly #log: Logger;

  constructor(opts: AgentOptions) {
    this.#o = opts;
    this.#log = (opts.logger ?? SILENT).child('ota');
  }

  get #statePath(): string {
    return join(this.#o.stateDir, 'agent.json');
  }

  #now(): Date {
    return (this.#o.now ?? (() => new Date()))();
  }

  async #readState(): Promise<AgentState> {
    const b = await this.#o.fs.readIfExists(this.#statePath);
    if (b === undefined) return { format: 'vigil-ota-agent/1', bad: [], attempts: {} };
    try {
      return AgentStateSchema.parse(JSON.parse(b.toString('utf8')));
    } catch (e) {
      throw new VigilError('EOTASTATE', `${this.#statePath} is unreadable`, { cause: e });
    }
  }

  async #writeState(s: AgentState): Promise<void> {
    await this.#o.fs.writeFileAtomic(this.#statePath, `${JSON.stringify(s)}\n`, 'ota-agent-state');
  }

  get #outcomePath(): string {
    return join(this.#o.stateDir, 'outcome.json');
  }

  /** The last outcome worth telling the phone, and whether the phone got it. */
  async lastOutcome(): Promise<LastOutcome | undefined> {
    const b = await this.#o.fs.readIfExists(this.#outcomePath);
    if (b === undefined) return undefined;
    try {
      return LastOutcomeSchema.parse(JSON.parse(b.toString('utf8')));
    } catch {
      return undefined; // unreadable: nothing to re-send
    }
  }

  async #writeOutcome(o: LastOutcome): Promise<void> {
    await this.#o.fs.ensureDir(this.#o.stateDir);
    await this.#o.fs.writeFileAtomic(this.#outcomePath, `${JSON.stringify(o)}\n`, 'ota-outcome');
  }

  async #deliver(rec: LastOutcome): Promise<boolean> {
    try {
      await this.#o.reporter.report(rec.outcome as OtaOutcome);
    } catch (e) {
      this.#log.warn('outcome report failed; kept for the next attempt', { error: reasonOf(e) });
      return false;
    }
    await this.#writeOutcome({ ...rec, delivered: true });
    return true;
  }

  async #report(o: OtaOutcome): Promise<void> {
    this.#log.info('outcome', { ...o });
    const rec: LastOutcome = {
      format: 'vigil-ota-outcome/1',
      at: this.#now().toISOString(),
      outcome: { ...o },
      delivered: false,
    };
    await this.#writeOutcome(rec);
    await this.#deliver(rec);
  }

  /** Send the last outcome again if the phone never got it (the reporter was down). */
  async deliverPending(): Promise<boolean> {
    const rec = await this.lastOutcome();
    if (rec === undefined || rec.delivered) return false;
    return this.#deliver(rec);
  }

  /** The committed version (`baseVersion` when the committed slot holds nothing Vigil installed). */
  async installedVersion(): Promise<string> {
    const { pointer, markers } = await this.#o.slots.status();
    return markers[pointer.committed]?.version ?? this.#o.baseVersion ?? '0.0.0';
  }

  /** Drop a trial that never reached its commit (crash, power cut, hang). */
  async recover(): Promise<OtaOutcome | undefined> {
    await this.#o.fs.cleanTemp(this.#o.stateDir);
    const { pointer, markers } = await this.#o.slots.status();
    if (pointer.trial === undefined) return undefined;
    const v = pointer.trial.version;
    const state = await this.#readState();
    const stage = pointer.trial.stage;
    let reason: string;
    if (stage === 'failed') {
      // The new version ran and its own health check failed: bad at once.
      reason = pointer.trial.reason ?? 'the new version failed its health check';
      await this.#writeState({
        ...state,
        bad: state.bad.includes(v) ? state.bad : [...state.bad, v],
      });
    } else if (stage === 'pending') {
      // Staged, but the hub never restarted into it: nothing ran, nothing to count.
      reason = 'the restart into the trial did not happen';
    } else {
      const attempts = (state.attempts[v] ?? 0) + 1;
      const bad =
        attempts >= MAX_TRIAL_ATTEMPTS && !state.bad.includes(v) ? [...state.bad, v] : state.bad;
      await this.#writeState({ ...state, attempts: { ...state.attempts, [v]: attempts }, bad });
      reason =
        stage === 'launched'
          ? 'the new version did not confirm its health before its commit (crash, hang stopped by the watchdog, or power loss)'
          : 'the trial was interrupted before its commit';
    }
    await this.#o.slots.dropTrial();
    const outcome: OtaOutcome = {
      kind: 'rolled-back',
      version: v,
      to: markers[pointer.committed]?.version ?? this.#o.baseVersion ?? '0.0.0',
      reason,
    };
    await this.#report(outcome);
    return outcome;
  }

  async #waitUntilIdle(signal?: AbortSignal): Promise<void> {
    let logged = false;
    while (await this.#o.busy.isBusy()) {
      if (!logged) this.#log.info('update staged; waiting for the recording to finish');
      logged = true;
      await sleep(this.#o.busyPollMs ?? 5000, signal);
    }
  }

  /** One update check. Never throws for expected failures: they are outcomes. */
  async check(signal?: AbortSignal): Promise<OtaOutcome> {
    // A restart trial that did not commit waits for the next poll before another try
    // (each try of a hanging version costs a watchdog period); an interrupted
    // in-process trial (power cut, crash of the agent) is retried at once.
    const wasRestartTrial = (await this.#o.slots.status()).pointer.trial?.stage !== undefined;
    const recovered = await this.recover();
    const installed = await this.installedVersion();
    const state = await this.#readState();
    const { client, reference, advancesFloor } = channelClient(
      this.#o,
      state.timeFloor,
      this.#now(),
      signal,
    );
    let trusted;
    try {
      trusted = await client.refresh();
    } catch (e) {
      if (e instanceof VerifyError) {
        // An unreachable or slow repository is a failure to retry, not a refusal.
        const o: OtaOutcome =
          e.failure === 'fetch'
            ? { kind: 'failed', reason: e.message, version: installed }
            : { kind: 'refused', reason: e.message, failure: e.failure, version: installed };
        await this.#report(o);
        return o;
      }
      throw e;
    }
    if (advancesFloor) await this.#writeState({ ...state, timeFloor: reference.toISOString() });
    const cand = pickCandidate(
      trusted.targets,
      this.#o.channel,
      this.#o.kind ?? 'app',
      installed,
      state.bad,
    );
    if (cand === undefined) {
      const o: OtaOutcome = recovered ?? { kind: 'up-to-date', version: installed };
      if (recovered === undefined) this.#log.debug('up to date', { version: installed });
      return o;
    }
    if (wasRestartTrial && recovered?.version === cand.version) return recovered;
    this.#log.info('update available', {
      from: installed,
      to: cand.version,
      target: cand.name,
      length: cand.target.length,
    });

    const { pointer, markers } = await this.#o.slots.status();
    const slot: SlotName = other(pointer.committed);
    const staged = markers[slot];
    const reusable =
      staged?.sha256 === cand.sha256 &&
      staged.version === cand.version &&
      (await this.#o.slots.digest(slot)) === staged.treeDigest;
    if (!reusable) {
      const downloads = join(this.#o.stateDir, 'downloads');
      await this.#o.fs.ensureDir(downloads);
      const file = join(downloads, `${cand.sha256}.tar.gz`);
      const url = targetUrl(this.#o.repoUrl, cand, trusted.root.consistent_snapshot);
      try {
        await downloadTarget({
          transport: this.#o.transport,
          fs: this.#o.fs,
          url,
          dest: file,
          target: cand.target,
          ...(this.#o.onProgress ? { onProgress: this.#o.onProgress } : {}),
          ...(signal ? { signal } : {}),
        });
      } catch (e) {
        if (!(e instanceof DownloadError)) throw e;
        const failure = e.failure;
        const o: OtaOutcome =
          failure === 'fetch'
            ? { kind: 'failed', reason: reasonOf(e), version: installed }
            : { kind: 'refused', reason: reasonOf(e), failure, version: installed };
        await this.#report(o);
        return o;
      }
      // Install: invalidate, unpack, sync, then the marker (the commit point of the install).
      await this.#o.slots.wipe(slot);
      if (!(await fileMatches(file, cand.target))) {
        await this.#o.fs.remove(file, 'ota-download');
        const o: OtaOutcome = {
          kind: 'refused',
          reason: 'the download changed on disk before install',
          failure: 'hash',
          version: installed,
        };
        await this.#report(o);
        return o;
      }
      const digest = await this.#o.slots.unpack(slot, file);
      await this.#o.slots.writeMarker(slot, {
        format: 'vigil-slot/1',
        version: cand.version,
        target: cand.name,
        sha256: cand.sha256,
        treeDigest: digest,
        installedAt: this.#now().toISOString(),
      });
      await this.#o.fs.remove(file, 'ota-download');
      this.#log.info('installed into the inactive slot', { slot, version: cand.version });
    }

    await this.#waitUntilIdle(signal);
    return this.#trial(slot, cand.version, installed, signal);
  }

  async #trial(
    slot: SlotName,
    version: string,
    from: string,
    signal?: AbortSignal,
  ): Promise<OtaOutcome> {
    if (this.#o.restart !== undefined) {
      await this.#o.slots.beginTrial(slot, version, this.#now(), { from });
      this.#log.info('restarting into the new version for its trial', { slot, version, from });
      await this.#o.restart.restartIntoTrial({ slot, version, from }, signal);
      return { kind: 'restarting', version, from };
    }
    await this.#o.slots.beginTrial(slot, version, this.#now());
    const timeoutMs = this.#o.trialTimeoutMs ?? 120_000;
    const deadline = AbortSignal.timeout(timeoutMs);
    const both = signal ? AbortSignal.any([signal, deadline]) : deadline;
    const dir = this.#o.slots.dirOf(slot);
    let reason: string | undefined;
    const probe = await this.#o.probe.probe(dir, version, { timeoutMs, signal: both });
    if (!probe.ok) reason = probe.reason;
    if (reason === undefined) reason = await this.#health(dir, version, both, timeoutMs);
    if (reason === undefined) {
      await this.#o.slots.commit();
      const o: OtaOutcome = { kind: 'committed', version, from };
      await this.#report(o);
      return o;
    }
    const state = await this.#readState();
    await this.#writeState({
      ...state,
      bad: state.bad.includes(version) ? state.bad : [...state.bad, version],
    });
    await this.#o.slots.dropTrial();
    const o: OtaOutcome = { kind: 'rolled-back', version, to: from, reason };
    await this.#report(o);
    return o;
  }

  /** The health check under the deadline: undefined when healthy, else the reason. */
  async #health(
    dir: string,
    version: string,
    signal: AbortSignal,
    timeoutMs: number,
  ): Promise<string | undefined> {
    try {
      const report = await Promise.race([
        this.#o.health.check({ slotDir: dir, version, signal }),
        new Promise<never>((_, reject) => {
          const fire = (): void => {
            reject(
              new VigilError(
                'ETIMEOUT',
                `health check did not finish within ${String(timeoutMs)} ms (hang; watchdog fired)`,
              ),
            );
          };
          // A check that notices the deadline itself gets a moment to say what still fails.
          const later = (): void => {
            setTimeout(fire, HEALTH_GRACE_MS).unref();
          };
          if (signal.aborted) later();
          else signal.addEventListener('abort', later, { once: true });
        }),
      ]);
      if (report.ok) return undefined;
      const failed = Object.entries(report.checks)
        .filter(([, c]) => !c.ok)
        .map(([k, c]) => `${k}${c.detail ? ` (${c.detail})` : ''}`);
      return `health check failed: ${failed.join(', ') || 'unhealthy'}`;
    } catch (e) {
      return reasonOf(e);
    }
  }

  /**
   * Run by the NEW hub, started by the launcher into a restart trial: run the
   * health check under the deadline, then commit (and report) or mark the trial
   * failed (the caller then exits; the next start runs the committed slot, whose
   * agent reports the rollback). `not-a-trial` when there is no launched trial
   * of `version` (nothing to confirm).
   */
  async confirmTrial(
    version: string,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<
    OtaOutcome | { readonly kind: 'not-a-trial' | 'interrupted'; readonly reason: string }
  > {
    const { pointer } = await this.#o.slots.status();
    const trial = pointer.trial;
    if (trial?.stage !== 'launched' || trial.version !== version)
      return {
        kind: 'not-a-trial',
        reason: `no launched trial of ${version} (pointer: ${JSON.stringify(pointer.trial ?? null)})`,
      };
    const timeoutMs = opts.timeoutMs ?? this.#o.trialTimeoutMs ?? 120_000;
    const deadline = AbortSignal.timeout(timeoutMs);
    const both = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
    const reason = await this.#health(this.#o.slots.dirOf(trial.slot), version, both, timeoutMs);
    // Stopped (shutdown) rather than timed out: no verdict. The trial stays `launched`, so
    // the next start runs the committed slot and counts an attempt.
    if (opts.signal?.aborted === true && !deadline.aborted)
      return { kind: 'interrupted', reason: 'the hub stopped during the trial health check' };
    const from = trial.from ?? '0.0.0';
    if (reason === undefined) {
      await this.#o.slots.commit();
      const state = await this.#readState();
      if (state.attempts[version] !== undefined) {
        const attempts = Object.fromEntries(
          Object.entries(state.attempts).filter(([v]) => v !== version),
        );
        await this.#writeState({ ...state, attempts });
      }
      const o: OtaOutcome = { kind: 'committed', version, from };
      await this.#report(o);
      return o;
    }
    this.#log.warn('the new version failed its health check; rolling back', { version, reason });
    await this.#o.slots.failTrial(reason);
    return { kind: 'rolled-back', version, to: from, reason };
  }

  /** Poll forever (interval + jitter) until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const random = this.#o.random ?? Math.random;
    const stopped = (): boolean => signal.aborted;
    while (!stopped()) {
      try {
        await this.deliverPending();
        await this.check(signal);
      } catch (e) {
        if (stopped()) return;
        this.#log.error('update check failed', { error: reasonOf(e) });
      }
      try {
        await sleep(
          nextDelay(this.#o.intervalMs ?? 6 * 3600_000, this.#o.jitter ?? 0.25, random),
          signal,
        );
      } catch {
        return;
      }
    }
  }
}
