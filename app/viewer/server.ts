/**
 * `startViewer`: the local web viewer behind `vigil app view`.
 *
 * Decryption happens here, in the local Node process, not in the page: the MLS
 * state and item keys stay in one process that owns the companion's durable
 * files (a second writer would fork the epoch state); WebCrypto has no
 * ChaCha20-Poly1305, so the page would need a JavaScript AEAD; and the page's
 * origin then never holds a key a browser extension or cache could leak. The
 * server listens on loopback only, checks the Host header (DNS rebinding) and
 * requires a random per-run access token (given in the printed URL, then kept
 * in an HttpOnly SameSite=Strict cookie).
 *
 *   GET /                    the page          GET /app.js
 *   GET /api/events          clips (newest first) with their thumbnail's seq
 *   GET /api/items/:seq/media  decrypted clip (video/mp4, Range supported) or thumbnail
 *   GET /api/live            asks the hub for live view (config group, app/hub-link.ts),
 *                            then streams the decrypted live fMP4 (for MSE); a refusal is
 *                            409 and a hub that does not answer 504, each {reason, message}
 *   GET /api/items/:seq/media?download  the same as an attachment (vigil-<UTC time>.mp4)
 *   /api/status, DELETE /api/items/:seq, /api/test-event, /api/phones...: review-api.ts
 *   GET /api/notices?after=N the notices received since N (the page raises browser
 *                            notifications for them): {notices:[{id,title,body,trusted,...}], last}
 *   GET /sw.js               the service worker (push where the browser has a push service)
 *   GET /api/push/config     {vapidKey}: the relay's VAPID key to subscribe with
 *   POST /api/push/subscription  the browser's PushSubscription JSON: registered at the relay
 *   POST /api/push/open      a push message's plaintext (from the service worker): opened here
 *                            (MLS, or labelled relay-reported) -> {title, body, trusted, source}
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen } from '../../hw/os/net.js';
import type { Logger } from '../../base/logger.js';
import type { RelayClient } from '../../protocol/relay-client.js';
import type { CompanionCrypto } from '../crypto.js';
import { openStoredItem, type StoredItemReader } from '../crypto.js';
import { followLive } from '../live.js';
import type { HubLink } from '../hub-link.js';
import { DEFAULT_LIVE_SECONDS, RENEW_EVERY_S } from '../hub-link.js';
import { Fmp4Resync } from './fmp4.js';
import type { ItemStore } from '../store.js';
import { eventsOf } from './events.js';
import { reviewRoute } from './review-api.js';
import type { DeviceReport, PhonesPort } from './review-api.js';
import type { RelayContact } from '../relay-contact.js';
import { APP_JS, INDEX_HTML, SW_JS } from './page.js';
import type { NoticeFeed } from '../push.js';
import { PushOpenError, openPush } from '../push.js';
import type { Inbound } from '../e2ee/phone.js';
import { PushRegistrationBody } from '../../protocol/push.js';

export interface ViewerOptions {
  readonly store: ItemStore;
  readonly crypto: CompanionCrypto;
  /** Relay client (phone credentials) for live view; without it /api/live answers 503. */
  readonly client?: RelayClient;
  readonly host?: string;
  readonly port?: number;
  readonly logger: Logger;
  /** Access token; random when omitted. */
  readonly token?: string;
  /** The config-group link to the hub: live requests and the offline alert. */
  readonly link?: HubLink;
  /** How long the hub may take to answer a live request (default 15 s). */
  readonly liveAnswerMs?: number;
  /** Seconds of live view per request (renewed while watched). */
  readonly liveSeconds?: number;
  /** Notices for browser notifications, and opening push messages (app/push.ts). */
  readonly notices?: {
    readonly feed: NoticeFeed;
    /** Opens hub messages with MLS (E2eeCrypto.receiveInbound); without it push notices are refused. */
    readonly receive?: (bytes: Uint8Array) => Promise<Inbound>;
    /** This phone's hub at the relay ("unseen" notices for other hubs are refused). */
    readonly deviceId?: string;
  };
  /** The Syncer's record of reaching the relay (status strip: last contact, unreachable since). */
  readonly contact?: RelayContact;
  /** What the hub reports of itself (state, camera, encoder, storage), where known. */
  readonly device?: () => DeviceReport | Promise<DeviceReport>;
  /** Development only: the hub records an event now (the page's "Test event" button). */
  readonly testEvent?: () => void | Promise<void>;
  /** Phone management for the phones page (app/phones.ts). */
  readonly phones?: PhonesPort;
}

/** Largest body the viewer reads (push messages and subscriptions are small). */
const MAX_POST = 8192;

async function readSmallBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > MAX_POST) return undefined;
    parts.push(b);
  }
  return Buffer.concat(parts);
}

export interface RunningViewer {
  /** The URL to open (carries the access token). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export type { EventView } from './events.js';
export { eventsOf } from './events.js';

/** `vigil-2026-11-22_12-00-00.mp4` (UTC): what a download is saved as. */
export function downloadName(startedAt: number, mime: string): string {
  const stamp = new Date(startedAt).toISOString().slice(0, 19).replace('T', '_').replace(/:/g, '-');
  const ext = mime === 'video/mp4' ? 'mp4' : mime === 'image/jpeg' ? 'jpg' : 'bin';
  return `vigil-${stamp}.${ext}`;
}

function mimeOf(codec: string): string {
  const base = codec.split(';')[0]?.trim() ?? '';
  return /^[a-z]+\/[a-z0-9.+-]+$/i.test(base) ? base : 'application/octet-stream';
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; media-src 'self' blob:; img-src 'self'; style-src 'unsafe-inline'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export async function startViewer(opts: ViewerOptions): Promise<RunningViewer> {
  const log = opts.logger.child('viewer');
  const token = opts.token ?? randomBytes(24).toString('base64url');
  const host = opts.host ?? '127.0.0.1';
  const cache = new Map<number, { mime: string; item: StoredItemReader; name: string }>();
  let port = 0;
  const lives = new Set<AbortController>();
  const client = opts.client;
  const review = {
    store: opts.store,
    crypto: opts.crypto,
    ...(client ? { ack: (seq: number) => client.ack(seq) } : {}),
    ...(opts.link ? { link: opts.link } : {}),
    ...(opts.contact ? { contact: opts.contact } : {}),
    ...(opts.device ? { device: opts.device } : {}),
    ...(opts.testEvent ? { testEvent: opts.testEvent } : {}),
    ...(opts.phones ? { phones: opts.phones } : {}),
  };

  const tokenOk = (t: string | undefined): boolean => {
    if (t === undefined) return false;
    const a = Buffer.from(t);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  /**
   * An item's media, opened for reading by range: the records indexed and the end record
   * checked (a truncated item fails here, before any byte is sent), each chunk decrypted
   * only when a response reaches it. The last few are kept (their ciphertext and key,
   * not their plaintext) for the player's successive range requests.
   */
  async function media(
    seq: number,
  ): Promise<{ mime: string; item: StoredItemReader; name: string } | undefined> {
    const hit = cache.get(seq);
    if (hit) return hit;
    const got = await opts.store.get(seq);
    if (!got) return undefined;
    const item = await openStoredItem(opts.crypto, got.bytes);
    const mime = mimeOf(item.summary.codec);
    const v = { mime, item, name: downloadName(item.summary.startedAt, mime) };
    cache.set(seq, v);
    while (cache.size > 4) cache.delete(cache.keys().next().value as number);
    return v;
  }

  /**
   * The plaintext (or the requested range) streamed chunk by chunk as it is decrypted,
   * never assembled. The first chunk is opened before the status line, so an item whose
   * first chunk fails is a 500; a chunk failing later aborts the response (the socket is
   * destroyed, the client sees fewer bytes than the content-length: never a good clip).
   */
  async function sendMedia(
    req: IncomingMessage,
    res: ServerResponse,
    m: { mime: string; item: StoredItemReader },
    attachment?: string,
  ): Promise<void> {
    const size = m.item.size;
    const disposition =
      attachment !== undefined
        ? { 'content-disposition': `attachment; filename="${attachment}"` }
        : {};
    let start = 0;
    let end = size - 1;
    let status = 200;
    let extra: Record<string, string> = {};
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && (range[1] !== '' || range[2] !== '')) {
      start = range[1] === '' ? size - Number(range[2]) : Number(range[1]);
      end = range[1] === '' || range[2] === '' ? size - 1 : Number(range[2]);
      start = Math.max(0, start);
      end = Math.min(size - 1, end);
      if (start > end) {
        res.writeHead(416, { ...SECURITY_HEADERS, 'content-range': `bytes */${size}` });
        res.end();
        return;
      }
      status = 206;
      extra = { 'content-range': `bytes ${start}-${end}/${size}` };
    }
    const pieces = m.item.read(start, end);
    let next = pieces.next(); // the first chunk authenticated before the status line
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      ...disposition,
      'content-type': m.mime,
      'accept-ranges': 'bytes',
      ...extra,
      'content-length': String(end - start + 1),
    });
    for (; !next.done; next = pieces.next()) {
      if (res.destroyed) return; // the client went away: decrypt no further
      if (!res.write(next.value))
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
    }
    res.end();
  }

  async function live(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = opts.client;
    if (!client) {
      res.writeHead(503, { ...SECURITY_HEADERS, 'content-type': 'text/plain' });
      res.end('live view needs the relay');
      return;
    }
    const ac = new AbortController();
    lives.add(ac);
    let renew: NodeJS.Timeout | undefined;
    res.on('close', () => {
      ac.abort();
      lives.delete(ac);
      if (renew) clearInterval(renew);
      // The last watcher left: tell the hub (it would stop anyway when no renewal comes).
      if (renew && lives.size === 0)
        opts.link?.stopLive().catch((e: unknown) => {
          log.warn('live stop not sent', { err: e });
        });
    });
    let expect: string | undefined;
    const link = opts.link;
    if (link) {
      const maxS = opts.liveSeconds ?? DEFAULT_LIVE_SECONDS;
      const answer = await link.requestLive(maxS, opts.liveAnswerMs ?? 15_000, ac.signal);
      if (ac.signal.aborted) {
        res.end();
        return;
      }
      if (!answer.ok) {
        res.writeHead(answer.reason === 'timeout' ? 504 : 409, {
          ...SECURITY_HEADERS,
          'content-type': 'application/json',
        });
        res.end(JSON.stringify({ reason: answer.reason, message: answer.message }));
        return;
      }
      expect = answer.started.itemId;
      renew = setInterval(() => {
        link.renewLive(maxS).catch((e: unknown) => {
          log.warn('live renewal not sent', { err: e });
        });
      }, RENEW_EVERY_S * 1000);
      renew.unref();
    }
    const resync = new Fmp4Resync();
    let started = false as boolean;
    let lastIndex = -1;
    try {
      await followLive(
        client,
        opts.crypto,
        {
          onStart(summary) {
            if (started) {
              // A new live session: this response carried the old one; end it so the page reconnects.
              ac.abort();
              return;
            }
            started = true;
            res.writeHead(200, {
              ...SECURITY_HEADERS,
              'content-type': 'application/octet-stream',
              'x-vigil-codec': summary.codec,
            });
            res.flushHeaders();
          },
          onData(plain, index) {
            if (!started) return;
            const gap = lastIndex >= 0 && index !== lastIndex + 1;
            lastIndex = index;
            const out = resync.push(plain, gap);
            if (out.length > 0) res.write(out);
          },
          onEnd() {
            ac.abort();
          },
        },
        ac.signal,
        expect,
      );
    } catch (e) {
      if (!ac.signal.aborted) log.warn('live view failed', { err: e });
    }
    if (!started) {
      if (!res.headersSent) res.writeHead(204, SECURITY_HEADERS);
    }
    res.end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const hostHeader = req.headers.host ?? '';
    const allowed = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${host}:${port}`];
    if (!allowed.includes(hostHeader)) {
      res.writeHead(421, { 'content-type': 'text/plain' });
      res.end('wrong host');
      return;
    }
    const url = new URL(req.url ?? '/', `http://${hostHeader}`);
    // cookies are per host, not per port: the name carries the port, so two viewers on
    // one machine (the local run's and `vigil app view`) do not log each other out
    const cookie = new RegExp(`(?:^|;\\s*)vigil_viewer_${port}=([A-Za-z0-9_-]+)`).exec(
      req.headers.cookie ?? '',
    )?.[1];
    const qtok = url.searchParams.get('t') ?? undefined;
    if (!tokenOk(cookie) && !tokenOk(qtok)) {
      res.writeHead(401, { ...SECURITY_HEADERS, 'content-type': 'text/plain' });
      res.end('open the URL that `vigil app view` printed (it carries the access token)');
      return;
    }
    const setCookie = tokenOk(qtok)
      ? { 'set-cookie': `vigil_viewer_${port}=${token}; HttpOnly; SameSite=Strict; Path=/` }
      : {};
    const p = url.pathname;
    if (req.method === 'POST' && (p === '/api/push/open' || p === '/api/push/subscription')) {
      await pushPost(req, res, p);
      return;
    }
    if (await reviewRoute(review, log, req, res, p, json, (seq) => cache.delete(seq))) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, SECURITY_HEADERS);
      res.end();
      return;
    }
    if (p === '/' || p === '/index.html') {
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        ...setCookie,
        'content-type': 'text/html; charset=utf-8',
      });
      res.end(INDEX_HTML);
      return;
    }
    if (p === '/app.js') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/javascript; charset=utf-8' });
      res.end(APP_JS);
      return;
    }
    if (p === '/api/events') {
      const events = eventsOf(await opts.store.list());
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'application/json' });
      res.end(JSON.stringify({ events }));
      return;
    }
    const m = /^\/api\/items\/([1-9][0-9]{0,14})\/media$/.exec(p);
    if (m) {
      const got = await media(Number(m[1]));
      if (!got) {
        res.writeHead(404, { ...SECURITY_HEADERS, 'content-type': 'text/plain' });
        res.end('no such item');
        return;
      }
      await sendMedia(req, res, got, url.searchParams.has('download') ? got.name : undefined);
      return;
    }
    if (p === '/api/live') {
      await live(req, res);
      return;
    }
    if (p === '/sw.js') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/javascript; charset=utf-8' });
      res.end(SW_JS);
      return;
    }
    if (p === '/api/notices') {
      const after = Number(url.searchParams.get('after') ?? '0');
      const got = opts.notices?.feed.since(Number.isSafeInteger(after) ? after : 0) ?? {
        notices: [],
        last: 0,
      };
      json(res, 200, got);
      return;
    }
    if (p === '/api/push/config') {
      if (!opts.client) {
        json(res, 503, { message: 'push needs the relay' });
        return;
      }
      json(res, 200, { vapidKey: await opts.client.pushVapidKey() });
      return;
    }
    res.writeHead(404, { ...SECURITY_HEADERS, 'content-type': 'text/plain' });
    res.end('not found');
  }

  function json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  async function pushPost(req: IncomingMessage, res: ServerResponse, p: string): Promise<void> {
    const body = await readSmallBody(req);
    if (body === undefined) {
      json(res, 413, { message: `body larger than ${MAX_POST} bytes` });
      return;
    }
    if (p === '/api/push/subscription') {
      // a JSON content type keeps cross-site forms out (they cannot send it without CORS)
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        json(res, 415, { message: 'expected application/json' });
        return;
      }
      if (!opts.client) {
        json(res, 503, { message: 'push needs the relay' });
        return;
      }
      let raw: unknown;
      try {
        raw = JSON.parse(body.toString('utf8'));
      } catch {
        json(res, 400, { message: 'subscription is not JSON' });
        return;
      }
      const sub = raw as { endpoint?: unknown; keys?: unknown };
      const r = PushRegistrationBody.safeParse({ endpoint: sub.endpoint, keys: sub.keys });
      if (!r.success) {
        json(res, 400, { message: r.error.issues[0]?.message ?? 'invalid subscription' });
        return;
      }
      const reg = await opts.client.registerPush(r.data);
      log.info('push endpoint registered from the browser', { id: reg.id });
      json(res, 200, reg);
      return;
    }
    const n = opts.notices;
    const client = opts.client;
    try {
      const o = await openPush(body, {
        receive:
          n?.receive ??
          (() => Promise.reject(new PushOpenError('this viewer cannot open hub notices'))),
        ...(n?.deviceId !== undefined ? { deviceId: n.deviceId } : {}),
        ...(client ? { ack: (seq: number) => client.ack(seq) } : {}),
      });
      if (o.cover !== true) n?.feed.add(o);
      json(res, 200, {
        title: o.title,
        body: o.body,
        trusted: o.trusted,
        source: o.source,
        // the clip the notice is about: a click on the notification opens it
        ...(o.notice?.itemId !== undefined ? { itemId: o.notice.itemId } : {}),
        cover: o.cover === true,
      });
    } catch (e) {
      if (!(e instanceof PushOpenError)) throw e;
      json(res, 422, { message: e.message });
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error('viewer request failed', { path: (req.url ?? '').split('?')[0], err });
      if (!res.headersSent) {
        res.writeHead(500, { ...SECURITY_HEADERS, 'content-type': 'text/plain' });
        res.end('could not open this item (see the viewer log)');
      } else res.destroy();
    });
  });
  await listen(server, { port: opts.port ?? 0, host });
  port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/?t=${token}`;
  log.info('viewer listening', { port });
  return {
    url,
    port,
    async close() {
      for (const ac of lives) ac.abort();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      });
    },
  };
}
