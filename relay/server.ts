/**
 * `startRelay`: the relay's HTTP(S) server over RelayCore. Routes (docs/relay.md):
 *
 *   GET    /v1/health
 *   POST   /v1/devices                      {deviceId} [x-vigil-enroll]  -> device credential
 *   POST   /v1/rendezvous/claim             {token}                      -> phone credential
 *   PUT    /v1/rendezvous            (hub)  {token, ttlMs?}
 *   GET    /v1/phones                (hub)                               -> phones of the device
 *   DELETE /v1/phones/:phoneId       (hub, or the phone itself)
 *   PUT    /v1/items/:itemId         (hub)  ?group&kind&offset&final&to  body = ciphertext
 *   GET    /v1/items/:itemId         (hub)                               -> upload status
 *   POST   /v1/live/:itemId          (hub)  ?index&final                  body = one live record
 *   GET    /v1/mailbox               (both) ?after&wait&group             -> items waiting for me
 *   GET    /v1/mailbox/:seq          (both) ?offset&wait                  -> ciphertext bytes
 *   DELETE /v1/mailbox/:seq          (both)                               -> acknowledge
 *   POST   /v1/up/:group             (phone) body = message for the hub
 *   GET    /v1/live                  (phone) ?item&after&wait             -> next live record
 *   GET    /v1/live/info             (both)
 *   GET|PUT|DELETE /v1/push/...      push endpoints and the VAPID key (relay/push-routes.ts)
 *
 * Bodies are never logged; logs carry ids, sizes and status codes only.
 */
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { listen } from '../hw/os/net.js';
import { join } from 'node:path';
import type { z } from 'zod';
import { DurableFs } from '../hw/os/fs.js';
import type { Logger } from '../base/logger.js';

import {
  AfterQuery,
  AppendQuery,
  CreateDeviceBody,
  Group,
  H,
  ItemId,
  LiveAppendQuery,
  LiveReadQuery,
  PhoneId,
  ReadQuery,
  RendezvousClaimBody,
  RendezvousOfferBody,
  parseToken,
} from '../protocol/relay-api.js';
import { RelayCore, RelayError } from './core.js';
import type { Principal } from './core.js';
import { DEFAULT_LIMITS, Lockout, RateLimiter, WindowCounter, requestTimeoutMs } from './limits.js';
import type { RelayLimits } from './limits.js';
import { FsBlobStore, FsRecordStore, SpaceReserve, isNoSpace, storageFull } from './store.js';
import { RelayPush } from './push.js';
import type { RelayPushOptions } from './push.js';
import { handlePushRoute } from './push-routes.js';
import type { BlobStore, RecordStore } from './store.js';

export interface RelayOptions {
  /** Local data directory (records always; blobs unless `blobs` is given). */
  readonly dataDir: string;
  readonly port?: number;
  readonly host?: string;
  readonly logger: Logger;
  readonly limits?: Partial<RelayLimits>;
  /** Blob backend; default: files under dataDir/blobs. */
  readonly blobs?: BlobStore;
  readonly records?: RecordStore;
  /**
   * Metadata in PostgreSQL (`postgres://…`) instead of files under dataDir:
   * several relay processes may then serve the same accounts (blobs must be
   * shared too: an S3 store). Migrations run at start.
   */
  readonly database?: string;
  readonly fs?: DurableFs;
  /** PEM certificate and key: serve HTTPS directly. Without them: plain HTTP for a reverse proxy. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Take the client address from the last X-Forwarded-For hop (only behind your own proxy). */
  readonly trustProxy?: boolean;
  /** When set, creating device accounts requires this token (x-vigil-enroll header). */
  readonly enrollToken?: string;
  readonly now?: () => number;
  /**
   * Push notifications (relay/push.ts): state in the record store (shared by
   * the relay processes on one database). On by default; `false` turns the
   * push routes off (they answer 501).
   */
  readonly push?:
    Partial<Omit<RelayPushOptions, 'records' | 'cluster' | 'legacyDir' | 'fs' | 'logger'>> | false;
}

export interface RunningRelay {
  readonly url: string;
  readonly port: number;
  readonly core: RelayCore;
  /** Push delivery, unless turned off. */
  readonly push: RelayPush | undefined;
  /** Resolves when the relay can no longer serve (its database change feed broke). */
  readonly failed: Promise<Error>;
  close(): Promise<void>;
}

class HttpError extends RelayError {}

const MAX_URL = 2048;

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function sendBytes(res: ServerResponse, data: Buffer, headers: Record<string, string>): void {
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': String(data.length),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(data);
}

/** Read a body of at most `max` bytes; 413 (before reading when Content-Length says so). */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max)
    throw new HttpError(413, 'ETOOLARGE', `body larger than ${max} bytes`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > max) throw new HttpError(413, 'ETOOLARGE', `body larger than ${max} bytes`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

async function readJson<T>(req: IncomingMessage, schema: z.ZodType<T>, max: number): Promise<T> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/json'))
    throw new HttpError(415, 'EMEDIATYPE', 'expected application/json');
  const raw = await readBody(req, max);
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, 'EJSON', 'body is not valid JSON');
  }
  return parseWith(schema, v);
}

function parseWith<T>(schema: z.ZodType<T>, v: unknown): T {
  const r = schema.safeParse(v);
  if (!r.success) {
    const first = r.error.issues[0];
    const where = first?.path.length ? `${first.path.join('.')}: ` : '';
    throw new HttpError(400, 'EINVALID', `${where}${first?.message ?? 'invalid request'}`);
  }
  return r.data;
}

function queryOf(url: URL): Record<string, string> {
  const o: Record<string, string> = {};
  for (const [k, v] of url.searchParams) {
    if (k in o) throw new HttpError(400, 'EINVALID', `query parameter ${k} given twice`);
    o[k] = v;
  }
  return o;
}

/** Errors a request stream raises when the client closes the connection mid-request. */
function isClientAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (
    code === 'ECONNRESET' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    code === 'ABORT_ERR' ||
    (err instanceof Error && err.message === 'aborted')
  );
}

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  const limits: RelayLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const log = opts.logger;
  const fs = opts.fs ?? new DurableFs();
  // Local stores share one filesystem and one space reserve for metadata (full-disk safety).
  const pgStore =
    opts.database === undefined
      ? undefined
      : await (
          await import('./pg-store.js')
        ).PgStore.open(opts.database, { logger: log.child('database') });
  const shared = opts.records ?? pgStore;
  const reserve =
    opts.blobs === undefined || shared === undefined
      ? new SpaceReserve(join(opts.dataDir, 'space-reserve'), fs, limits.storageReserveBytes)
      : undefined;
  if (reserve && !(await reserve.ensure()))
    log.warn('the data directory has no room for the metadata reserve; uploads are refused', {
      bytes: limits.storageReserveBytes,
    });
  const blobs = opts.blobs ?? new FsBlobStore(join(opts.dataDir, 'blobs'), fs, reserve);
  const records = shared ?? new FsRecordStore(join(opts.dataDir, 'records'), fs, reserve);
  const now = opts.now ?? Date.now;
  const lockout = new Lockout(
    limits.lockoutFailures,
    limits.lockoutWindowMs,
    limits.lockoutMs,
    now,
    limits.lockoutTargetFailures,
  );
  let failedWith: (e: Error) => void = () => undefined;
  const failedP = new Promise<Error>((resolve) => {
    failedWith = resolve;
  });
  let core: RelayCore;
  let push: RelayPush | undefined;
  try {
    // push state lives in the same record store: opened first, so the core's
    // change feed (started in RelayCore.open) reaches it from the start
    push =
      opts.push === false
        ? undefined
        : await RelayPush.open({
            ...opts.push,
            records,
            ...(pgStore ? { cluster: pgStore } : {}),
            legacyDir: join(opts.dataDir, 'push'),
            fs,
            logger: log.child('push'),
          });
    const pushRef = push;
    core = await RelayCore.open({
      blobs,
      records,
      limits,
      logger: log.child('core'),
      now,
      enrollToken: opts.enrollToken,
      ...(pgStore
        ? {
            cluster: pgStore,
            onPeerFailure: (m) => lockout.fail(m.addr, m.target, m.at),
            onLost: failedWith,
            onRecord: (ns, id, doc) =>
              pushRef ? pushRef.applyRemote(ns, id, doc) : ns.startsWith('push-'),
          }
        : {}),
    });
    for (const f of await core.recentFailures(now() - limits.lockoutWindowMs))
      lockout.fail(f.addr, f.target, f.at);
  } catch (e) {
    await push?.close();
    await pgStore?.close();
    throw e;
  }
  const rate = new RateLimiter(limits.ratePerSec, limits.rateBurst, now);
  const registrations = new WindowCounter(
    limits.maxRegistrationsPerAddress,
    limits.registrationWindowMs,
    now,
  );
  if (opts.enrollToken === undefined)
    log.warn('device registration is open (no enrollment token): capped per address and in total', {
      perAddress: limits.maxRegistrationsPerAddress,
      maxDevices: limits.maxDevices,
    });

  function clientAddr(req: IncomingMessage): string {
    if (opts.trustProxy) {
      const xff = req.headers['x-forwarded-for'];
      const last = (Array.isArray(xff) ? xff.join(',') : (xff ?? '')).split(',').pop()?.trim();
      if (last) return last;
    }
    return req.socket.remoteAddress ?? 'unknown';
  }

  function throttle(key: string): void {
    const wait = rate.take(key);
    if (wait > 0) throw new HttpError(429, 'ERATE', 'too many requests', { retryAfterMs: wait });
  }

  async function authenticate(req: IncomingMessage, addr: string): Promise<Principal> {
    const locked = lockout.lockedFor(addr);
    if (locked > 0)
      throw new HttpError(429, 'ELOCKED', 'too many failed authentications from this address', {
        retryAfterMs: locked,
      });
    const h = req.headers.authorization ?? '';
    const m = /^Bearer (\S+)$/.exec(h);
    const tok = m?.[1] === undefined ? undefined : parseToken(m[1]);
    const p = tok && (await core.authenticate(tok.kind, tok.id, tok.secret));
    if (!p) {
      // counted against the address and the account named; a later success erases nothing
      failed(addr, tok ? `${tok.kind}:${tok.id}` : undefined);
      throw new HttpError(401, 'EAUTH', 'missing or invalid credentials');
    }
    throttle(`${p.kind}:${p.id}`);
    if (p.kind === 'device') push?.seen(p.deviceId); // for the "unseen since" push
    return p;
  }

  function failed(addr: string, target?: string): void {
    // the other relay processes count it too (with several processes on PostgreSQL)
    core.publishFailure({ addr, target, at: now() }).catch((e: unknown) => {
      log.warn('failed authentication not shared with the other relays', { err: e });
    });
    if (lockout.fail(addr, target))
      log.warn('address locked after failed attempts', {
        addr,
        ...(target !== undefined ? { target } : {}),
      });
  }

  function need(p: Principal, kind: Principal['kind']): void {
    if (p.kind !== kind)
      throw new HttpError(
        403,
        'EFORBIDDEN',
        `this route is for ${kind === 'device' ? 'hubs' : 'phones'}`,
      );
  }

  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    abort: AbortSignal,
  ): Promise<void> {
    const addr = clientAddr(req);
    if ((req.url ?? '').length > MAX_URL) throw new HttpError(414, 'EURI', 'request URI too long');
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://relay.invalid');
    } catch {
      throw new HttpError(400, 'EURI', 'malformed request URI');
    }
    const parts = url.pathname.split('/').filter((s) => s !== '');
    const method = req.method ?? 'GET';
    const route = `${method} /${parts.slice(0, 2).join('/')}${parts.length > 2 ? '/:' : ''}`;
    const q = queryOf(url);
    if (parts[0] !== 'v1') throw new HttpError(404, 'ENOROUTE', 'no such route');
    const seg = parts[2];
    const seqOf = (s: string | undefined): number => {
      if (s === undefined || !/^[1-9][0-9]{0,14}$/.test(s))
        throw new HttpError(400, 'EINVALID', 'item sequence must be a positive integer');
      return Number(s);
    };
    const wait = (w: number | undefined): number => Math.min(w ?? 0, limits.maxWaitMs);

    if (parts[1] === 'push') {
      const handled = await handlePushRoute({
        method,
        rest: parts.slice(2),
        query: q,
        res,
        push,
        authenticate: () => authenticate(req, addr),
        throttleAddress: () => {
          throttle(`addr:${addr}`);
        },
        readJson: (schema) => readJson(req, schema, limits.maxJsonBytes),
        parse: parseWith,
        send: (status, body) => {
          send(res, status, body);
        },
      });
      if (handled) return;
      throw new HttpError(404, 'ENOROUTE', 'no such route');
    }
    switch (route) {
      case 'GET /v1/health':
        throttle(`addr:${addr}`);
        send(res, 200, { ok: true });
        return;
      case 'POST /v1/devices': {
        throttle(`addr:${addr}`);
        const locked = lockout.lockedFor(addr);
        if (locked > 0)
          throw new HttpError(429, 'ELOCKED', 'too many failed attempts from this address', {
            retryAfterMs: locked,
          });
        const enroll = req.headers['x-vigil-enroll'];
        if (!core.checkEnrollment(typeof enroll === 'string' ? enroll : undefined)) {
          failed(addr, 'enroll');
          throw new HttpError(401, 'EAUTH', 'device registration needs a valid enrollment token');
        }
        const body = await readJson(req, CreateDeviceBody, limits.maxJsonBytes);
        const later = registrations.take(addr);
        if (later > 0)
          throw new HttpError(429, 'ERATE', 'too many device registrations from this address', {
            retryAfterMs: later,
          });
        const { token } = await core.createDevice(body.deviceId);
        send(res, 201, { principal: 'device', id: body.deviceId, deviceId: body.deviceId, token });
        return;
      }
      case 'POST /v1/rendezvous/:': {
        if (seg !== 'claim' || parts.length !== 3) break;
        throttle(`addr:${addr}`);
        const locked = lockout.lockedFor(addr);
        if (locked > 0)
          throw new HttpError(429, 'ELOCKED', 'too many failed attempts from this address', {
            retryAfterMs: locked,
          });
        const body = await readJson(req, RendezvousClaimBody, limits.maxJsonBytes);
        const r = await core.claimRendezvous(body.token);
        if (!r) {
          failed(addr);
          throw new HttpError(
            404,
            'ENOTFOUND',
            'no pairing rendezvous for this token (expired, used, or never offered)',
          );
        }
        send(res, 201, { principal: 'phone', id: r.phoneId, deviceId: r.deviceId, token: r.token });
        return;
      }
      case 'PUT /v1/rendezvous': {
        const p = await authenticate(req, addr);
        need(p, 'device');
        const body = await readJson(req, RendezvousOfferBody, limits.maxJsonBytes);
        const offer = await core.offerRendezvous(p.deviceId, body.token, body.ttlMs);
        // A token another hub offered answers like a fresh one (no oracle), but counts as a failure.
        if (offer.inUse) failed(addr);
        send(res, 200, { expiresAt: offer.expiresAt });
        return;
      }
      case 'GET /v1/phones': {
        const p = await authenticate(req, addr);
        need(p, 'device');
        send(res, 200, {
          phones: (await core.phonesOf(p.deviceId)).map((x) => ({
            phoneId: x.phoneId,
            createdAt: x.createdAt,
          })),
        });
        return;
      }
      case 'DELETE /v1/phones/:': {
        const p = await authenticate(req, addr);
        if (parts.length !== 3) break;
        const phoneId = parseWith(PhoneId, seg);
        if (p.kind === 'phone' && p.id !== phoneId)
          throw new HttpError(
            403,
            'EFORBIDDEN',
            'a phone can remove only itself; the hub removes others',
          );
        await core.removePhone(p.deviceId, phoneId);
        await push?.forgetPhone(phoneId);
        send(res, 200, { ok: true });
        return;
      }
      case 'PUT /v1/items/:': {
        const p = await authenticate(req, addr);
        need(p, 'device');
        if (parts.length !== 3) break;
        const itemId = parseWith(ItemId, seg);
        const aq = parseWith(AppendQuery, q);
        const body = await readBody(req, limits.maxAppendBytes);
        const isNew = (await core.uploadStatus(p.deviceId, itemId)) === undefined;
        const st = await core.append(p.deviceId, itemId, aq, body);
        // A hub notice in one piece: push its ciphertext to the phones' endpoints (once).
        if (push && isNew && aq.group === 'notification' && aq.kind === 'message' && st.complete)
          void push.notice(
            aq.to ?? (await core.phonesOf(p.deviceId)).map((x) => x.phoneId),
            st.seq,
            aq.group,
            body,
          );
        send(res, 200, st);
        return;
      }
      case 'GET /v1/items/:': {
        const p = await authenticate(req, addr);
        need(p, 'device');
        if (parts.length !== 3) break;
        const st = await core.uploadStatus(p.deviceId, parseWith(ItemId, seg));
        if (!st) throw new HttpError(404, 'ENOTFOUND', 'no such item');
        send(res, 200, st);
        return;
      }
      case 'POST /v1/live/:': {
        const p = await authenticate(req, addr);
        need(p, 'device');
        if (parts.length !== 3) break;
        const itemId = parseWith(ItemId, seg);
        const lq = parseWith(LiveAppendQuery, q);
        const body = await readBody(req, limits.maxLiveRecordBytes);
        send(res, 200, await core.appendLive(p.deviceId, itemId, lq.index, lq.final, body));
        return;
      }
      case 'GET /v1/live': {
        const p = await authenticate(req, addr);
        need(p, 'phone');
        const item = q.item;
        delete q.item;
        if (item !== undefined) parseWith(ItemId, item);
        const lq = parseWith(LiveReadQuery, q);
        const r = await core.readLive(p, item, lq.after, wait(lq.wait), abort);
        if (!r) {
          res.writeHead(204, { 'cache-control': 'no-store' });
          res.end();
          return;
        }
        sendBytes(res, r.data, {
          [H.itemId]: r.itemId,
          [H.index]: String(r.index),
          [H.final]: r.final ? '1' : '0',
        });
        return;
      }
      case 'GET /v1/live/:': {
        if (seg !== 'info' || parts.length !== 3) break;
        const p = await authenticate(req, addr);
        send(res, 200, await core.liveInfo(p.deviceId));
        return;
      }
      case 'GET /v1/mailbox': {
        const p = await authenticate(req, addr);
        const aq = parseWith(AfterQuery, q);
        send(res, 200, await core.list(p, aq.after ?? 0, aq.group, wait(aq.wait), abort));
        return;
      }
      case 'GET /v1/mailbox/:': {
        const p = await authenticate(req, addr);
        if (parts.length !== 3) break;
        const seq = seqOf(seg);
        const rq = parseWith(ReadQuery, q);
        const { info, data } = await core.read(p, seq, rq.offset ?? 0, wait(rq.wait), abort);
        sendBytes(res, data, {
          [H.itemId]: info.itemId,
          [H.kind]: info.kind,
          [H.group]: info.group,
          [H.received]: String(info.size),
          [H.complete]: info.complete ? '1' : '0',
        });
        return;
      }
      case 'DELETE /v1/mailbox/:': {
        const p = await authenticate(req, addr);
        if (parts.length !== 3) break;
        await core.ack(p, seqOf(seg));
        send(res, 200, { ok: true });
        return;
      }
      case 'POST /v1/up/:': {
        const p = await authenticate(req, addr);
        need(p, 'phone');
        if (parts.length !== 3) break;
        const group = parseWith(Group, seg);
        if (Object.keys(q).length > 0)
          throw new HttpError(400, 'EINVALID', 'no query parameters allowed');
        const body = await readBody(req, limits.maxMessageBytes);
        send(res, 200, await core.postUp(p, group, body));
        return;
      }
      default:
        break;
    }
    throw new HttpError(404, 'ENOROUTE', 'no such route');
  }

  /** In-flight requests per forwarded address (the connection cap behind a trusted proxy). */
  const inFlight = new Map<string, number>();
  /** Every handler still running: close() waits for them, so no write lands after it. */
  const running = new Set<Promise<void>>();

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const ac = new AbortController();
    let aborted = false;
    res.on('close', () => {
      if (!res.writableFinished) aborted = true;
      ac.abort();
    });
    const t0 = now();
    let work: Promise<void>;
    if (opts.trustProxy) {
      const a = clientAddr(req);
      const n = (inFlight.get(a) ?? 0) + 1;
      inFlight.set(a, n);
      res.once('close', () => {
        const left = (inFlight.get(a) ?? 1) - 1;
        if (left > 0) inFlight.set(a, left);
        else inFlight.delete(a);
      });
      work =
        n > limits.maxConnectionsPerAddress
          ? Promise.reject(
              new HttpError(429, 'ECONNLIMIT', 'too many open requests from this address', {
                retryAfterMs: 1000,
              }),
            )
          : handle(req, res, ac.signal);
    } else work = handle(req, res, ac.signal);
    const tracked = work
      .catch((err: unknown) => {
        const e = err instanceof RelayError ? err : isNoSpace(err) ? storageFull(err) : undefined;
        // The client went away (closed the connection mid-body or mid-wait): not a server error.
        if (!e && (aborted || ac.signal.aborted || (req.destroyed && isClientAbort(err)))) {
          aborted = true;
          log.debug('request aborted by the client', { method: req.method });
          res.destroy();
          return;
        }
        const status = e?.status ?? 500;
        if (!e) log.error('request failed', { method: req.method, err });
        const headers: Record<string, string> = {};
        const retry = e?.extra?.retryAfterMs;
        if (typeof retry === 'number') headers['retry-after'] = String(Math.ceil(retry / 1000));
        // Unread request bodies: close the connection rather than drain megabytes.
        if (!req.readableEnded) headers.connection = 'close';
        if (res.headersSent) {
          res.destroy();
          return;
        }
        send(
          res,
          status,
          {
            error: e?.code ?? 'EINTERNAL',
            message: e ? e.message : 'internal error',
            ...(e?.extra ?? {}),
          },
          headers,
        );
      })
      .finally(() => {
        // what the relay's operator can see of every request (docs/relay.md "Privacy modes"):
        // route, the group and kind it names, body size, status, time — never the body
        const q = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
        const length = Number(req.headers['content-length'] ?? 0);
        log.debug('request', {
          method: req.method,
          path: (req.url ?? '').split('?')[0],
          ...(q.has('group') ? { group: q.get('group') } : {}),
          ...(q.has('kind') ? { kind: q.get('kind') } : {}),
          bytes: Number.isSafeInteger(length) ? length : 0,
          status: aborted ? 'aborted' : res.statusCode,
          at: t0,
          ms: now() - t0,
        });
      });
    running.add(tracked);
    void tracked.finally(() => running.delete(tracked));
  };

  // A request (headers and body) must arrive within the time the largest append
  // takes at the slowest accepted rate; Node answers 408 and closes otherwise.
  const timeouts = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: requestTimeoutMs(limits),
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, limits.headersTimeoutMs / 4)),
  };
  const server: Server = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key, ...timeouts }, onRequest)
    : createHttpServer(timeouts, onRequest);
  server.keepAliveTimeout = 65_000;
  if (!opts.trustProxy) {
    // Open connections per client address (behind a trusted proxy every connection
    // comes from the proxy: in-flight requests per forwarded address are capped instead).
    const conns = new Map<string, number>();
    server.on('connection', (socket: Socket) => {
      const a = socket.remoteAddress ?? 'unknown';
      const n = (conns.get(a) ?? 0) + 1;
      if (n > limits.maxConnectionsPerAddress) {
        log.debug('connection refused: too many from this address', { addr: a });
        socket.destroy();
        return;
      }
      conns.set(a, n);
      socket.once('close', () => {
        const left = (conns.get(a) ?? 1) - 1;
        if (left > 0) conns.set(a, left);
        else conns.delete(a);
      });
    });
  }
  const host = opts.host ?? '127.0.0.1';
  await listen(server, { port: opts.port ?? 0, host });
  const port = (server.address() as AddressInfo).port;
  const scheme = opts.tls ? 'https' : 'http';
  const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info('relay listening', {
    url,
    blobs: blobs.name,
    records: pgStore ? 'postgres' : opts.records ? 'custom' : 'fs',
  });
  return {
    url,
    port,
    core,
    push,
    failed: failedP,
    async close() {
      core.close();
      await push?.close();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
      // Closing the connections aborted every handler's signal; wait for them to unwind
      // so none writes into the state directory after close() resolved.
      await Promise.allSettled([...running]);
      await pgStore?.close();
    },
  };
}
