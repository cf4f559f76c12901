/**
 * Real adapters for the agent's HealthCheck and BusyPort, answered by the
 * running hub itself (the new version checks itself during its trial start):
 *
 *   storage  the data volume the hub unlocked is there and writable
 *   mls      the MLS state loads and names at least one phone (`isPaired`)
 *   camera   the media pipeline reports `running` (development mode: no camera)
 *   relay    the configured relay answers GET /v1/health
 *
 * Checks are retried until all pass or the deadline (the caller's signal) ends
 * them: a camera that needs a few seconds to start is not a failure, one that
 * never starts is.
 */
import { access, constants, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isAborted, pause } from '../base/async.js';
import { networkCause, reasonOf, VigilError } from '../base/errors.js';
import { httpRequest } from '../base/http.js';
import type { BusyPort, HealthCheck, HealthReport } from './agent.js';

/** What the health check reads of the hub (a view of HubServices + its state). */
export interface HubView {
  /** The unlocked data directory, once services started. */
  dataDir(): string | undefined;
  isPaired(dataDir: string): Promise<boolean>;
  /** HubServices.status(): `media` is the pipeline's MediaStatus when it runs. */
  status(): Record<string, unknown>;
}

export interface HubHealthOptions {
  readonly hub: HubView;
  readonly mode: 'production' | 'development';
  readonly relayUrl: string | undefined;
  /** GET <relay>/v1/health; default `fetchRelayHealth` (base/http.ts). */
  readonly relayHealth?: (url: string, signal: AbortSignal) => Promise<boolean>;
  /** Pause between rounds while some check still fails. Default 1 s. */
  readonly retryMs?: number;
}

type Check = { ok: boolean; detail?: string };

function mediaState(status: Record<string, unknown>): string | undefined {
  const m = status.media;
  if (typeof m !== 'object' || m === null) return undefined;
  const s = (m as { state?: unknown }).state;
  return typeof s === 'string' ? s : undefined;
}

/** GET <relay>/v1/health through base/http.ts; a network failure names its cause. */
export async function fetchRelayHealth(url: string, signal: AbortSignal): Promise<boolean> {
  let res;
  try {
    res = await httpRequest(new URL('/v1/health', url), { signal, maxBytes: 64 * 1024 });
  } catch (e) {
    const cause = networkCause(e);
    throw new VigilError(
      'EUNREACHABLE',
      `${reasonOf(e)}${cause !== undefined ? ` (${cause})` : ''}`,
      {
        cause: e,
      },
    );
  }
  res.discard();
  return res.ok;
}

export class HubHealthCheck implements HealthCheck {
  readonly #o: HubHealthOptions;

  constructor(o: HubHealthOptions) {
    this.#o = o;
  }

  async #storage(dataDir: string | undefined): Promise<Check> {
    if (dataDir === undefined) return { ok: false, detail: 'storage not unlocked' };
    try {
      if (!(await stat(dataDir)).isDirectory())
        return { ok: false, detail: `${dataDir} is not a directory` };
      await access(dataDir, constants.W_OK);
      // A real write: a volume remounted read-only after errors fails here.
      const probe = await mkdtemp(join(dataDir, '.ota-health-'));
      await rm(probe, { recursive: true, force: true });
      return { ok: true };
    } catch (e) {
      return { ok: false, detail: `data volume unusable: ${reasonOf(e)}` };
    }
  }

  async #mls(dataDir: string | undefined): Promise<Check> {
    if (dataDir === undefined) return { ok: false, detail: 'no data volume' };
    try {
      return (await this.#o.hub.isPaired(dataDir))
        ? { ok: true }
        : { ok: false, detail: 'MLS state names no paired phone' };
    } catch (e) {
      return { ok: false, detail: `MLS state does not load: ${reasonOf(e)}` };
    }
  }

  #camera(): Check {
    const s = mediaState(this.#o.hub.status());
    if (s === 'running') return { ok: true };
    if (s === undefined && this.#o.mode === 'development')
      return { ok: true, detail: 'development mode: no camera pipeline' };
    return { ok: false, detail: `camera pipeline ${s ?? 'not started'}` };
  }

  async #relay(signal: AbortSignal): Promise<Check> {
    const url = this.#o.relayUrl;
    if (url === undefined)
      return this.#o.mode === 'development'
        ? { ok: true, detail: 'development mode: no relay configured' }
        : { ok: false, detail: 'no relay.url configured' };
    try {
      const ok = await (this.#o.relayHealth ?? fetchRelayHealth)(
        url,
        AbortSignal.any([signal, AbortSignal.timeout(10_000)]),
      );
      return ok ? { ok: true } : { ok: false, detail: `relay ${url} answers unhealthy` };
    } catch (e) {
      return { ok: false, detail: `relay ${url} unreachable: ${reasonOf(e)}` };
    }
  }

  async once(signal: AbortSignal): Promise<HealthReport> {
    const dataDir = this.#o.hub.dataDir();
    const [storage, mls, relay] = await Promise.all([
      this.#storage(dataDir),
      this.#mls(dataDir),
      this.#relay(signal),
    ]);
    const checks = { storage, mls, camera: this.#camera(), relay };
    return { ok: Object.values(checks).every((c) => c.ok), checks };
  }

  /** Retries until healthy; when the signal ends it, the last failing report. */
  async check(ctx: { signal: AbortSignal }): Promise<HealthReport> {
    for (;;) {
      const r = await this.once(ctx.signal);
      if (r.ok || ctx.signal.aborted) return r;
      const wait = this.#o.retryMs ?? 1000;
      await pause(wait, ctx.signal);
      if (isAborted(ctx.signal)) return r;
    }
  }
}

/** Busy while the media pipeline is recording a clip. */
export class MediaBusy implements BusyPort {
  readonly #status: () => Record<string, unknown>;

  constructor(status: () => Record<string, unknown>) {
    this.#status = status;
  }

  isBusy(): boolean {
    const m = this.#status().media;
    if (typeof m !== 'object' || m === null) return false;
    const rec = (m as { recording?: { active?: unknown } }).recording;
    return rec?.active === true;
  }
}
