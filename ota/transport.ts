/**
 * HTTP(S) access to a repository, with the limits TUF needs against
 * endless-data and slow-retrieval attacks: every body is read as a stream and
 * cut off past a maximum length, and every request has a deadline and an idle
 * timeout. Ranged GETs make target downloads resumable.
 */
import { networkCause, VigilError } from '../base/errors.js';

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
  const cause = networkCause(e) ?? (inner instanceof Error ? inner.message : undefined);
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

export interface FetchTransportOptions {
  /** Whole-request deadline for metadata (ms). */
  readonly timeoutMs?: number;
  /** Abort when no byte arrives for this long (ms). */
  readonly idleMs?: number;
}

async function* idleGuard(
  body: ReadableStream<Uint8Array>,
  idleMs: number,
  abort: AbortController,
): AsyncIterable<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // Settle first: the abort also fails the pending read, and the race must
          // report the reason, not the abort.
          reject(
            new TransportError('EOTA_FETCH', `no data for ${String(idleMs)} ms (slow retrieval)`),
          );
          abort.abort();
        }, idleMs);
      });
      try {
        const r = await Promise.race([reader.read(), idle]);
        if (r.done) return;
        yield r.value;
      } finally {
        clearTimeout(timer);
      }
    }
  } finally {
    // Cancelling settles a pending read; only then can the lock go.
    await reader.cancel().catch(() => undefined);
    try {
      reader.releaseLock();
    } catch {
      /* already released */
    }
  }
}

/** Transport over the global fetch (undici). */
export class FetchTransport implements Transport {
  readonly #timeoutMs: number;
  readonly #idleMs: number;

  constructor(opts: FetchTransportOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#idleMs = opts.idleMs ?? 30_000;
  }

  async getBytes(
    url: string,
    maxLength: number,
    signal?: AbortSignal,
  ): Promise<Buffer | undefined> {
    const abort = new AbortController();
    const timer = setTimeout(() => {
      abort.abort();
    }, this.#timeoutMs);
    const onAbort = (): void => {
      abort.abort();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      let res: Response;
      try {
        res = await fetch(url, {
          signal: abort.signal,
          redirect: 'error',
          headers: { 'accept-encoding': 'identity' },
        });
      } catch (e) {
        throw fetchFailed(url, e);
      }
      if (res.status === 404 || res.status === 403) {
        await res.body?.cancel();
        return undefined;
      }
      if (res.status !== 200 || res.body === null) {
        await res.body?.cancel();
        throw new TransportError('EOTA_FETCH', `${url}: HTTP ${String(res.status)}`, res.status);
      }
      const declared = Number(res.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > maxLength) {
        await res.body.cancel();
        throw new TransportError(
          'EOTA_TOO_LONG',
          `${url} is ${String(declared)} bytes, more than the ${String(maxLength)} allowed`,
        );
      }
      const parts: Buffer[] = [];
      let n = 0;
      try {
        for await (const chunk of idleGuard(res.body, this.#idleMs, abort)) {
          n += chunk.length;
          if (n > maxLength) {
            abort.abort();
            throw new TransportError(
              'EOTA_TOO_LONG',
              `${url} sent more than the ${String(maxLength)} bytes allowed (endless data)`,
            );
          }
          parts.push(Buffer.from(chunk));
        }
      } catch (e) {
        if (e instanceof TransportError) throw e;
        throw new TransportError('EOTA_FETCH', `${url}: transfer failed`, undefined, { cause: e });
      }
      return Buffer.concat(parts);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async getFrom(url: string, offset: number, signal?: AbortSignal): Promise<RangeResponse> {
    const abort = new AbortController();
    const onAbort = (): void => {
      abort.abort();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let res: Response;
    try {
      res = await fetch(url, {
        signal: abort.signal,
        redirect: 'error',
        headers: {
          'accept-encoding': 'identity',
          ...(offset > 0 ? { range: `bytes=${String(offset)}-` } : {}),
        },
      });
    } catch (e) {
      signal?.removeEventListener('abort', onAbort);
      throw fetchFailed(url, e);
    }
    const release = (): void => {
      signal?.removeEventListener('abort', onAbort);
    };
    if (res.status === 404 || res.status === 403) {
      release();
      await res.body?.cancel();
      throw new TransportError('EOTA_NOT_FOUND', `${url}: not found`, res.status);
    }
    if ((res.status !== 200 && res.status !== 206) || res.body === null) {
      release();
      await res.body?.cancel();
      throw new TransportError('EOTA_FETCH', `${url}: HTTP ${String(res.status)}`, res.status);
    }
    let start = 0;
    let total: number | undefined;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!m) {
        release();
        await res.body.cancel();
        throw new TransportError('EOTA_FETCH', `${url}: bad Content-Range`);
      }
      start = Number(m[1]);
      total = m[3] === '*' ? undefined : Number(m[3]);
    } else {
      const len = Number(res.headers.get('content-length') ?? NaN);
      total = Number.isFinite(len) ? len : undefined;
    }
    const body = res.body;
    const idleMs = this.#idleMs;
    async function* guarded(): AsyncIterable<Uint8Array> {
      try {
        yield* idleGuard(body, idleMs, abort);
      } finally {
        release();
      }
    }
    return { offset: start, total, body: guarded() };
  }
}
