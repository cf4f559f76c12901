/**
 * A small HTTP(S) client on node:http / node:https: what the hub needs of `fetch`, without
 * loading undici (the platform `fetch` adds 3-4 MiB to the hub's resident memory; issue #19,
 * docs/decisions.md "A fetch-free hub").
 *
 *   const a = await httpRequest(url, { method: 'PUT', body, signal, maxBytes });
 *   a.status; a.header('content-range'); await a.bytes(); a.discard();
 *
 * - The deadline is the caller's `signal` (`AbortSignal.timeout(ms)`): an abort rejects with
 *   the signal's reason, as `fetch` does (`networkCause` names a timeout ETIMEDOUT).
 * - `idleMs`: no byte for that long (headers or body) ends the request (slow retrieval). Within
 *   the body it counts only while the reader waits for the next chunk: a reader that takes its
 *   time with a chunk (a download's fsync on a busy card) holds the socket back itself, and
 *   that is not the server being slow.
 * - `maxBytes`: a body longer than that (declared or sent) is cut off with EHTTP_TOO_LARGE.
 * - A network failure is `HttpError` EHTTP_FAILED "request failed" whose cause is the socket's
 *   or TLS layer's error (ECONNREFUSED, ENOTFOUND, CERT_HAS_EXPIRED...).
 * - Redirects are not followed (an answer is an answer); bodies are not decompressed (no
 *   accept-encoding is sent).
 * - Connections are kept alive through node's global agents; node:https (TLS) is loaded the
 *   first time an https URL is asked for.
 */
import { request as httpRequestRaw } from 'node:http';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { RequestOptions } from 'node:https';
import { CodedError } from './errors.js';

export type HttpErrorCode = 'EHTTP_FAILED' | 'EHTTP_TOO_LARGE' | 'EHTTP_IDLE' | 'EHTTP_URL';

export class HttpError extends CodedError<HttpErrorCode> {}

export interface HttpRequestInit {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string;
  /** Ends the request (deadline, or the caller's stop); the request rejects with its reason. */
  readonly signal?: AbortSignal;
  /** Largest body accepted, in bytes. Default 64 MiB. */
  readonly maxBytes?: number;
  /**
   * End the request when no byte arrives for this long (ms) while the caller waits for one
   * (the headers, then each chunk it asks for). Default: no idle limit.
   */
  readonly idleMs?: number;
  /** https: trust these certificates (PEM) instead of the system's (tests, a private CA). */
  readonly ca?: string | Buffer;
}

export interface HttpAnswer {
  readonly status: number;
  /** 200-299. */
  readonly ok: boolean;
  /** A response header (names are case-insensitive); several values joined with ", ". */
  header(name: string): string | undefined;
  /** The whole body (at most `maxBytes`). */
  bytes(): Promise<Buffer>;
  text(): Promise<string>;
  json(): Promise<unknown>;
  /** The body as it arrives (at most `maxBytes`); leaving the loop early drops the rest. */
  chunks(): AsyncIterable<Buffer>;
  /** Not interested in the body: drain it so the connection can be used again. */
  discard(): void;
}

/** The port HTTP users take (tests and the local run wrap or replace it). */
export type HttpRequester = (url: string | URL, init?: HttpRequestInit) => Promise<HttpAnswer>;

export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

type RequestFn = (options: RequestOptions, cb: (res: IncomingMessage) => void) => ClientRequest;
let httpsRequest: RequestFn | undefined;

async function requestFnFor(url: URL): Promise<RequestFn> {
  if (url.protocol === 'http:') return httpRequestRaw;
  if (url.protocol === 'https:') {
    httpsRequest ??= (await import('node:https')).request;
    return httpsRequest;
  }
  throw new HttpError('EHTTP_URL', `${url.protocol} URLs are not supported (http or https)`);
}

/** What an aborted signal rejects with: its reason (`fetch` does the same). */
function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new HttpError('EHTTP_FAILED', 'request aborted', { cause: r });
}

function failed(e: unknown): HttpError {
  return new HttpError('EHTTP_FAILED', 'request failed', { cause: e });
}

function idle(ms: number): HttpError {
  return new HttpError('EHTTP_IDLE', `no data for ${String(ms)} ms`);
}

function tooLarge(max: number, declared?: number): HttpError {
  return new HttpError(
    'EHTTP_TOO_LARGE',
    declared !== undefined
      ? `the answer is ${String(declared)} bytes, more than the ${String(max)} allowed`
      : `the answer is longer than the ${String(max)} bytes allowed`,
  );
}

class Answer implements HttpAnswer {
  readonly status: number;
  readonly ok: boolean;
  readonly #res: IncomingMessage;
  readonly #max: number;
  readonly #signal: AbortSignal | undefined;
  readonly #idleMs: number | undefined;
  readonly #done: () => void;
  #used = false;

  constructor(
    res: IncomingMessage,
    max: number,
    signal: AbortSignal | undefined,
    idleMs: number | undefined,
    done: () => void,
  ) {
    this.status = res.statusCode ?? 0;
    this.ok = this.status >= 200 && this.status < 300;
    this.#res = res;
    this.#max = max;
    this.#signal = signal;
    this.#idleMs = idleMs;
    this.#done = done;
  }

  header(name: string): string | undefined {
    const v = this.#res.headers[name.toLowerCase()];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  #take(): IncomingMessage {
    if (this.#used) throw new HttpError('EHTTP_FAILED', 'the answer body was already read');
    this.#used = true;
    return this.#res;
  }

  async *chunks(): AsyncGenerator<Buffer> {
    const res = this.#take();
    const declared = Number(this.header('content-length') ?? NaN);
    try {
      if (Number.isFinite(declared) && declared > this.#max) throw tooLarge(this.#max, declared);
      let n = 0;
      const it = (res as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      for (;;) {
        const next = await this.#next(it, res);
        if (next.done === true) break;
        const chunk = next.value;
        n += chunk.length;
        if (n > this.#max) throw tooLarge(this.#max);
        yield chunk;
      }
      // a connection cut before the declared length ends the iteration with an error above;
      // an abort between chunks shows here
      if (this.#signal?.aborted) throw abortReason(this.#signal);
    } catch (e) {
      if (this.#signal?.aborted) throw abortReason(this.#signal);
      if (e instanceof HttpError) throw e;
      throw failed(e);
    } finally {
      if (!res.complete) res.destroy();
      this.#done();
    }
  }

  /** The next chunk; with idleMs, the wait for it (and only that wait) is limited. */
  async #next(
    it: AsyncIterator<Buffer>,
    res: IncomingMessage,
  ): Promise<IteratorResult<Buffer, unknown>> {
    const ms = this.#idleMs;
    if (ms === undefined) return it.next();
    const timer = setTimeout(() => {
      res.destroy(idle(ms));
    }, ms);
    try {
      return await it.next();
    } finally {
      clearTimeout(timer);
    }
  }

  async bytes(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.chunks()) parts.push(c);
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }

  discard(): void {
    if (this.#used) return;
    this.#used = true;
    const res = this.#res;
    // small answers are drained (the connection is kept); a long one is not worth reading
    const declared = Number(this.header('content-length') ?? NaN);
    const empty = this.status === 204 || this.status === 304 || res.complete;
    if (empty || (Number.isFinite(declared) && declared <= 64 * 1024)) {
      res.once('end', this.#done);
      res.once('error', this.#done);
      const ms = this.#idleMs;
      if (ms !== undefined && !res.complete) {
        // the drain's own idle timer (the socket's is off, and may serve another request next)
        const timer = setTimeout(() => {
          res.destroy(idle(ms));
        }, ms);
        res.on('data', () => timer.refresh());
        res.once('close', () => {
          clearTimeout(timer);
        });
      }
      res.resume();
    } else {
      res.destroy();
      this.#done();
    }
  }
}

/** One request; resolves once the status and headers are in. */
export async function httpRequest(
  url: string | URL,
  init: HttpRequestInit = {},
): Promise<HttpAnswer> {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch (e) {
    throw new HttpError('EHTTP_URL', `not a URL: ${String(url)}`, { cause: e });
  }
  const requestFn = await requestFnFor(u);
  const signal = init.signal;
  if (signal?.aborted) throw abortReason(signal);
  const body = typeof init.body === 'string' ? Buffer.from(init.body, 'utf8') : init.body;
  const headers: Record<string, string> = { ...init.headers };
  if (body !== undefined) headers['content-length'] = String(body.byteLength);
  const max = init.maxBytes ?? DEFAULT_MAX_BYTES;
  const idleMs = init.idleMs;

  return new Promise<HttpAnswer>((resolve, reject) => {
    let settled = false;
    const req = requestFn(
      {
        protocol: u.protocol,
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port === '' ? undefined : Number(u.port),
        path: `${u.pathname}${u.search}`,
        method: init.method ?? 'GET',
        headers,
        ...(init.ca !== undefined ? { ca: init.ca } : {}),
        ...(u.username !== '' || u.password !== ''
          ? { auth: `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}` }
          : {}),
      },
      (res) => {
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        // from here the body's reader times its own waits (Answer.#next): the socket's idle
        // timer would also fire while the reader is busy and the socket held back for it
        if (idleMs !== undefined) req.setTimeout(0);
        resolve(new Answer(res, max, signal, idleMs, release));
      },
    );
    const onAbort = (): void => {
      // Settle first: destroying the request fails it too, and the caller must see the reason.
      if (!settled && signal !== undefined) {
        settled = true;
        reject(abortReason(signal));
      }
      req.destroy();
    };
    const release = (): void => {
      signal?.removeEventListener('abort', onAbort);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // the socket's idle timer covers the wait for the headers
    if (idleMs !== undefined)
      req.setTimeout(idleMs, () => {
        if (!settled) req.destroy(idle(idleMs));
      });
    req.on('error', (e) => {
      if (settled) return;
      settled = true;
      release();
      reject(
        signal?.aborted === true ? abortReason(signal) : e instanceof HttpError ? e : failed(e),
      );
    });
    req.end(body);
  });
}
