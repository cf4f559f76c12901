/**
 * HTTP(S) access to a repository, with the limits TUF needs against
 * endless-data and slow-retrieval attacks: every body is read as a stream and
 * cut off past a maximum length, and every request has a deadline and an idle
 * timeout. Ranged GETs make target downloads resumable.
 */
import { networkCause, VigilError } from '../base/errors.js';
import { HttpError, httpRequest } from '../base/http.js';
import type { HttpAnswer, HttpRequester } from '../base/http.js';

export class TransportError extends VigilError {
  readonly status: number | undefined;
  constructor(
    code: 'EOTA_FETCH' | 'EOTA_TOO_LONG' | 'EOTA_NOT_FOUND',
    message: string,
    status?: number,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'TransportError';
    this.status = status;
  }
}

/** "cannot fetch URL", with the network cause (ECONNREFUSED, ENOTFOUND, certificate errors…). */
function fetchFailed(url: string, e: unknown): TransportError {
  const inner = e instanceof Error ? e.cause : undefined;
  const cause =
    e instanceof HttpError && e.code !== 'EHTTP_FAILED'
      ? e.message
      : (networkCause(e) ?? (inner instanceof Error ? inner.message : undefined));
  return new TransportError(
    'EOTA_FETCH',
    `cannot fetch ${url}${cause === undefined ? '' : ` (${cause})`}`,
    undefined,
    { cause: e },
  );
}

export interface RangeResponse {
  /** Byte offset the body starts at (0 when the server ignored the Range header). */
  readonly offset: number;
  /** Total size of the resource when the server told it. */
  readonly total: number | undefined;
  readonly body: AsyncIterable<Uint8Array>;
}

/** The port the agent downloads through. */
export interface Transport {
  /** GET a whole (small) resource, at most `maxLength` bytes; `undefined` on 404/403. */
  getBytes(url: string, maxLength: number, signal?: AbortSignal): Promise<Buffer | undefined>;
  /** GET from `offset` on (HTTP Range). */
  getFrom(url: string, offset: number, signal?: AbortSignal): Promise<RangeResponse>;
}

export interface HttpTransportOptions {
  /** Whole-request deadline for metadata (ms). */
  readonly timeoutMs?: number;
  /** Abort when no byte arrives for this long (ms). */
  readonly idleMs?: number;
  /** The HTTP client (default base/http.ts's `httpRequest`: node:http, not undici). */
  readonly http?: HttpRequester;
}
/** The old name (it ran on the platform fetch). */
export type FetchTransportOptions = HttpTransportOptions;

/** A failure while the body streams in, as the agent reads it. */
function bodyFailed(url: string, e: unknown, idleMs: number): unknown {
  if (e instanceof TransportError) return e;
  if (e instanceof HttpError && e.code === 'EHTTP_IDLE')
    return new TransportError(
      'EOTA_FETCH',
      `no data for ${String(idleMs)} ms (slow retrieval)`,
      undefined,
      {
        cause: e,
      },
    );
  const cause = networkCause(e) ?? (e instanceof Error ? e.message : undefined);
  return new TransportError(
    'EOTA_FETCH',
    `${url}: transfer failed${cause === undefined ? '' : ` (${cause})`}`,
    undefined,
    { cause: e },
  );
}

/** Transport over base/http.ts (node:http/https). */
export class HttpTransport implements Transport {
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  readonly #http: HttpRequester;

  constructor(opts: HttpTransportOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#idleMs = opts.idleMs ?? 30_000;
    this.#http = opts.http ?? httpRequest;
  }

  async getBytes(
    url: string,
    maxLength: number,
    signal?: AbortSignal,
  ): Promise<Buffer | undefined> {
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    const all = signal ? AbortSignal.any([signal, deadline]) : deadline;
    let res: HttpAnswer;
    try {
      res = await this.#http(url, {
        signal: all,
        idleMs: this.#idleMs,
        maxBytes: maxLength,
        headers: { 'accept-encoding': 'identity' },
      });
    } catch (e) {
      throw fetchFailed(url, e);
    }
    if (res.status === 404 || res.status === 403) {
      res.discard();
      return undefined;
    }
    if (res.status !== 200) {
      res.discard();
      throw new TransportError('EOTA_FETCH', `${url}: HTTP ${String(res.status)}`, res.status);
    }
    const declared = Number(res.header('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > maxLength) {
      res.discard();
      throw new TransportError(
        'EOTA_TOO_LONG',
        `${url} is ${String(declared)} bytes, more than the ${String(maxLength)} allowed`,
      );
    }
    try {
      return await res.bytes();
    } catch (e) {
      if (e instanceof HttpError && e.code === 'EHTTP_TOO_LARGE')
        throw new TransportError(
          'EOTA_TOO_LONG',
          `${url} sent more than the ${String(maxLength)} bytes allowed (endless data)`,
          undefined,
          { cause: e },
        );
      throw bodyFailed(url, e, this.#idleMs);
    }
  }

  async getFrom(url: string, offset: number, signal?: AbortSignal): Promise<RangeResponse> {
    let res: HttpAnswer;
    try {
      res = await this.#http(url, {
        ...(signal ? { signal } : {}),
        idleMs: this.#idleMs,
        // a target's length is checked by the download against its metadata
        maxBytes: Number.MAX_SAFE_INTEGER,
        headers: {
          'accept-encoding': 'identity',
          ...(offset > 0 ? { range: `bytes=${String(offset)}-` } : {}),
        },
      });
    } catch (e) {
      throw fetchFailed(url, e);
    }
    if (res.status === 404 || res.status === 403) {
      res.discard();
      throw new TransportError('EOTA_NOT_FOUND', `${url}: not found`, res.status);
    }
    if (res.status !== 200 && res.status !== 206) {
      res.discard();
      throw new TransportError('EOTA_FETCH', `${url}: HTTP ${String(res.status)}`, res.status);
    }
    let start = 0;
    let total: number | undefined;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.header('content-range') ?? '');
      if (!m) {
        res.discard();
        throw new TransportError('EOTA_FETCH', `${url}: bad Content-Range`);
      }
      start = Number(m[1]);
      total = m[3] === '*' ? undefined : Number(m[3]);
    } else {
      const len = Number(res.header('content-length') ?? NaN);
      total = Number.isFinite(len) ? len : undefined;
    }
    const idleMs = this.#idleMs;
    async function* guarded(): AsyncIterable<Uint8Array> {
      try {
        yield* res.chunks();
      } catch (e) {
        throw bodyFailed(url, e, idleMs);
      }
    }
    return { offset: start, total, body: guarded() };
  }
}

/** The old name (it ran on the platform fetch), kept for its users: HttpTransport. */
export const FetchTransport = HttpTransport;
