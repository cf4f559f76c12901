/**
 * Push notifications from the relay (docs/relay.md "Push"): phones register
 * Web Push endpoints; the relay pushes
 *
 *  - every hub notice (a `notification`-group message: MLS ciphertext the relay
 *    cannot read) to the endpoints of the phones it is addressed to, and
 *  - its own "unseen since" notice when a hub has not been seen (no
 *    authenticated request) for `unseenAfterMs`, once per outage.
 *
 * Delivery is RFC 8030 (an HTTP POST to the endpoint) with the payload
 * encrypted per RFC 8291 (`aes128gcm`) for the endpoint's keys and a VAPID
 * (RFC 8292) JWT, both produced by the `web-push` library; the relay makes the
 * request itself (injectable transport, so tests and loopback endpoints work).
 * A failed delivery is retried with capped exponential backoff (429, 5xx,
 * network errors; `Retry-After` is honoured); 404/410 means the subscription
 * is gone and the endpoint is dropped; any other answer ends the attempt.
 *
 * State, kept apart from the storage port (records/blobs) on purpose — see
 * docs/decisions.md: `<dir>/vapid.json` (the relay's VAPID key pair, created
 * once, mode 0600) and `<dir>/endpoints/<phoneId>.json` (one small file per
 * phone account), each written with DurableFs. "Last seen" times of hubs are
 * memory only: after a relay restart a hub counts as seen at the start.
 */
import { createHash } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import webpush from 'web-push';
import { z } from 'zod';
import type { Clock } from '../base/clock.js';
import { SYSTEM_CLOCK } from '../base/clock.js';
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { DurableFs } from '../hw/os/fs.js';
import { encodePushMessage } from '../protocol/push.js';
import type { PushMessage, PushRegistration } from '../protocol/push.js';
import { RelayError } from './errors.js';

export const DEFAULT_UNSEEN_AFTER_MS = 30 * 60_000;
export const DEFAULT_MAX_ENDPOINTS_PER_PHONE = 8;
export const DEFAULT_PUSH_RETRY = { initialMs: 2000, maxMs: 5 * 60_000, attempts: 6 } as const;

/** One HTTP request to a push endpoint; resolves with the status (and Retry-After, seconds). */
export type PushTransport = (req: {
  readonly endpoint: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}) => Promise<{ status: number; retryAfterS?: number }>;

export const fetchTransport: PushTransport = async (req) => {
  const res = await fetch(req.endpoint, {
    method: 'POST',
    headers: req.headers,
    body: req.body as unknown as BodyInit,
    signal: AbortSignal.timeout(30_000),
    redirect: 'error',
  });
  await res.body?.cancel();
  const ra = Number(res.headers.get('retry-after'));
  return { status: res.status, ...(Number.isFinite(ra) && ra > 0 ? { retryAfterS: ra } : {}) };
};

/** What happened to one delivery (logged, and observed by tests). */
export type PushEvent =
  | { type: 'delivered'; endpointId: string; phoneId: string; status: number; attempt: number }
  | { type: 'retry'; endpointId: string; status: number | 'network'; attempt: number; inMs: number }
  | { type: 'dropped'; endpointId: string; phoneId: string; status: number }
  | { type: 'failed'; endpointId: string; status: number | 'network'; attempt: number }
  | { type: 'unseen'; deviceId: string; since: number; endpoints: number };

export interface RelayPushOptions {
  readonly dir: string;
  readonly fs: DurableFs;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** VAPID `sub` claim: a mailto: or https: URL where the push service can reach the operator. */
  readonly subject?: string;
  /** Accept http:// endpoints on loopback addresses (development and tests only). */
  readonly allowLoopbackHttp?: boolean;
  readonly maxEndpointsPerPhone?: number;
  readonly retry?: {
    readonly initialMs: number;
    readonly maxMs: number;
    readonly attempts: number;
  };
  readonly transport?: PushTransport;
  /** Push "unseen since" after this long without a hub request; 0 turns it off. */
  readonly unseenAfterMs?: number;
  /** How long a push service keeps an undelivered message (TTL header). */
  readonly ttlSeconds?: number;
}

const VapidFile = z.strictObject({
  v: z.literal(1),
  publicKey: z.string().regex(/^[A-Za-z0-9_-]{87}$/),
  privateKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});

const Endpoint = z.strictObject({
  id: z.string(),
  endpoint: z.string(),
  p256dh: z.string(),
  auth: z.string(),
  createdAt: z.number(),
});
type Endpoint = z.infer<typeof Endpoint>;
const EndpointsFile = z.strictObject({
  v: z.literal(1),
  phoneId: z.string(),
  deviceId: z.string(),
  endpoints: z.array(Endpoint),
});
type EndpointsFile = z.infer<typeof EndpointsFile>;

const PHONE_FILE_RE = /^[A-Za-z0-9_-]{4,64}\.json$/;

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

/**
 * Check an endpoint URL: https (or http to loopback when allowed), no
 * credentials, no fragment. Throws a one-line RelayError.
 */
export function checkEndpointUrl(endpoint: string, allowLoopbackHttp: boolean): URL {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new RelayError(400, 'EINVALID', 'endpoint: not a URL');
  }
  if (u.username !== '' || u.password !== '')
    throw new RelayError(400, 'EINVALID', 'endpoint: must not carry credentials');
  if (u.hash !== '') throw new RelayError(400, 'EINVALID', 'endpoint: must not have a fragment');
  if (u.protocol === 'https:') return u;
  if (u.protocol === 'http:') {
    if (allowLoopbackHttp && isLoopback(u.hostname)) return u;
    throw new RelayError(
      400,
      'EINVALID',
      allowLoopbackHttp
        ? 'endpoint: http is accepted only to a loopback address; use https'
        : 'endpoint: must be an https URL',
    );
  }
  throw new RelayError(400, 'EINVALID', `endpoint: must be an https URL, not ${u.protocol}`);
}

function endpointIdOf(endpoint: string): string {
  return createHash('sha256').update(endpoint).digest().subarray(0, 16).toString('base64url');
}

interface Job {
  readonly phoneId: string;
  readonly ep: Endpoint;
  readonly payload: Buffer;
  readonly urgency: 'normal' | 'high';
  attempt: number;
}

export class RelayPush {
  readonly #o: RelayPushOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #transport: PushTransport;
  readonly #retry: { initialMs: number; maxMs: number; attempts: number };
  readonly #subject: string;
  readonly #phones = new Map<string, EndpointsFile>();
  readonly #listeners = new Set<(e: PushEvent) => void>();
  /** deviceId -> last authenticated request (this process's clock). */
  readonly #lastSeen = new Map<string, number>();
  /** Devices whose current outage was already announced. */
  readonly #announced = new Set<string>();
  readonly #watchTimers = new Map<string, { cancel(): void }>();
  readonly #retryTimers = new Set<{ cancel(): void }>();
  readonly #inFlight = new Set<Promise<void>>();
  #vapid: z.infer<typeof VapidFile> | undefined;
  #closed = false;
  #writes = Promise.resolve();

  private constructor(o: RelayPushOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    this.#transport = o.transport ?? fetchTransport;
    this.#retry = { ...DEFAULT_PUSH_RETRY, ...o.retry };
    this.#subject = o.subject ?? 'mailto:operator@vigil-relay.invalid';
  }

  static async open(o: RelayPushOptions): Promise<RelayPush> {
    const p = new RelayPush(o);
    await p.#loadVapid();
    await p.#loadEndpoints();
    // Hubs whose phones take pushes count as seen at start (their real last request is unknown).
    for (const f of p.#phones.values()) p.seen(f.deviceId);
    return p;
  }

  get vapidPublicKey(): string {
    return (this.#vapid as z.infer<typeof VapidFile>).publicKey;
  }

  onEvent(fn: (e: PushEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  async #loadVapid(): Promise<void> {
    const file = join(this.#o.dir, 'vapid.json');
    const raw = await this.#o.fs.readIfExists(file);
    if (raw !== undefined) {
      const r = VapidFile.safeParse(JSON.parse(raw.toString('utf8')));
      if (!r.success)
        throw new RelayError(
          500,
          'ECONFIG',
          `${file} is not a VAPID key file (delete it to create a new key; phones must then subscribe again)`,
        );
      this.#vapid = r.data;
      return;
    }
    const k = webpush.generateVAPIDKeys();
    const v = { v: 1 as const, publicKey: k.publicKey, privateKey: k.privateKey };
    await this.#o.fs.ensureDir(this.#o.dir);
    await this.#o.fs.writeFileAtomic(file, JSON.stringify(v) + '\n', 'push-vapid');
    await chmod(file, 0o600);
    this.#vapid = v;
    this.#log.info('VAPID key pair created', { publicKey: v.publicKey });
  }

  async #loadEndpoints(): Promise<void> {
    const dir = join(this.#o.dir, 'endpoints');
    await this.#o.fs.ensureDir(dir);
    const { readdir } = await import('node:fs/promises');
    for (const name of await readdir(dir)) {
      if (!PHONE_FILE_RE.test(name)) continue;
      const raw = await this.#o.fs.readIfExists(join(dir, name));
      if (raw === undefined) continue;
      const r = EndpointsFile.safeParse(JSON.parse(raw.toString('utf8')));
      if (!r.success) {
        this.#log.warn('push endpoints file invalid; ignored', { file: name });
        continue;
      }
      this.#phones.set(r.data.phoneId, r.data);
    }
  }

  #save(f: EndpointsFile): Promise<void> {
    const path = join(this.#o.dir, 'endpoints', `${f.phoneId}.json`);
    const write = async (): Promise<void> => {
      if (f.endpoints.length === 0) await this.#o.fs.remove(path, 'push-endpoints');
      else await this.#o.fs.writeFileAtomic(path, JSON.stringify(f) + '\n', 'push-endpoints');
    };
    // serialised: two changes of one phone never race on its file
    const next = this.#writes.then(write, write);
    this.#writes = next.catch(() => undefined);
    return next;
  }

  // ---- registration -----------------------------------------------------------------

  /** Register (or refresh the keys of) an endpoint for a phone account. */
  async register(
    phoneId: string,
    deviceId: string,
    reg: PushRegistration,
  ): Promise<{ id: string; created: boolean }> {
    checkEndpointUrl(reg.endpoint, this.#o.allowLoopbackHttp ?? false);
    const id = endpointIdOf(reg.endpoint);
    const cur = this.#phones.get(phoneId) ?? { v: 1 as const, phoneId, deviceId, endpoints: [] };
    const ep: Endpoint = {
      id,
      endpoint: reg.endpoint,
      p256dh: reg.keys.p256dh,
      auth: reg.keys.auth,
      createdAt: this.#clock.now(),
    };
    const exists = cur.endpoints.some((e) => e.id === id);
    const max = this.#o.maxEndpointsPerPhone ?? DEFAULT_MAX_ENDPOINTS_PER_PHONE;
    if (!exists && cur.endpoints.length >= max)
      throw new RelayError(
        409,
        'EFULL',
        `this phone has ${max} push endpoints already; remove one first`,
      );
    const next: EndpointsFile = {
      ...cur,
      endpoints: [...cur.endpoints.filter((e) => e.id !== id), ep],
    };
    await this.#save(next);
    this.#phones.set(phoneId, next);
    this.seen(deviceId, false);
    this.#log.info('push endpoint registered', {
      phoneId,
      endpointId: id,
      origin: new URL(reg.endpoint).origin,
    });
    return { id, created: !exists };
  }

  list(phoneId: string): { id: string; origin: string; createdAt: number }[] {
    return (this.#phones.get(phoneId)?.endpoints ?? []).map((e) => ({
      id: e.id,
      origin: new URL(e.endpoint).origin,
      createdAt: e.createdAt,
    }));
  }

  async remove(phoneId: string, id: string): Promise<boolean> {
    const cur = this.#phones.get(phoneId);
    if (!cur?.endpoints.some((e) => e.id === id)) return false;
    const next = { ...cur, endpoints: cur.endpoints.filter((e) => e.id !== id) };
    await this.#save(next);
    if (next.endpoints.length === 0) this.#phones.delete(phoneId);
    else this.#phones.set(phoneId, next);
    return true;
  }

  /** The phone account is gone: so are its endpoints. */
  async forgetPhone(phoneId: string): Promise<void> {
    const cur = this.#phones.get(phoneId);
    if (!cur) return;
    this.#phones.delete(phoneId);
    await this.#save({ ...cur, endpoints: [] });
  }

  endpointCount(phoneId: string): number {
    return this.#phones.get(phoneId)?.endpoints.length ?? 0;
  }

  // ---- delivery ------------------------------------------------------------------------

  /**
   * A hub notice was stored as mailbox item `seq` (group `group`) for `phoneIds`:
   * push its ciphertext to their endpoints. Returns how many deliveries started;
   * 0 also when the notice is too large for a push (the phones get it from the mailbox).
   */
  notice(phoneIds: readonly string[], seq: number, group: string, ciphertext: Uint8Array): number {
    const payload = encodePushMessage({
      v: 1,
      t: 'notice',
      seq,
      group,
      mls: Buffer.from(ciphertext).toString('base64url'),
    });
    if (!payload) {
      this.#log.info('notice too large to push; it waits in the mailbox', {
        seq,
        bytes: ciphertext.length,
      });
      return 0;
    }
    return this.#fanOut(phoneIds, payload, 'high');
  }

  #fanOut(phoneIds: readonly string[], payload: Buffer, urgency: 'normal' | 'high'): number {
    let n = 0;
    for (const phoneId of phoneIds)
      for (const ep of this.#phones.get(phoneId)?.endpoints ?? []) {
        this.#attempt({ phoneId, ep, payload, urgency, attempt: 1 });
        n++;
      }
    return n;
  }

  #emit(e: PushEvent): void {
    for (const fn of this.#listeners) fn(e);
  }

  #attempt(job: Job): void {
    if (this.#closed) return;
    const p = this.#send(job).finally(() => this.#inFlight.delete(p));
    this.#inFlight.add(p);
  }

  async #send(job: Job): Promise<void> {
    const vapid = this.#vapid as z.infer<typeof VapidFile>;
    let status: number | 'network';
    let retryAfterS: number | undefined;
    try {
      const req = webpush.generateRequestDetails(
        { endpoint: job.ep.endpoint, keys: { p256dh: job.ep.p256dh, auth: job.ep.auth } },
        job.payload,
        {
          contentEncoding: 'aes128gcm',
          TTL: this.#o.ttlSeconds ?? 86_400,
          urgency: job.urgency,
          vapidDetails: {
            subject: this.#subject,
            publicKey: vapid.publicKey,
            privateKey: vapid.privateKey,
          },
        },
      );
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        headers[k.toLowerCase()] = `${v as string | number}`; // TTL comes as a number
      const r = await this.#transport({ endpoint: job.ep.endpoint, headers, body: req.body });
      status = r.status;
      retryAfterS = r.retryAfterS;
    } catch (e) {
      status = 'network';
      this.#log.debug('push request failed', { endpointId: job.ep.id, err: reasonOf(e) });
    }
    if (typeof status === 'number' && status >= 200 && status < 300) {
      this.#emit({
        type: 'delivered',
        endpointId: job.ep.id,
        phoneId: job.phoneId,
        status,
        attempt: job.attempt,
      });
      return;
    }
    if (status === 404 || status === 410) {
      // the subscription is gone (RFC 8030 §7.3): never try it again
      await this.remove(job.phoneId, job.ep.id).catch((e: unknown) => {
        this.#log.warn('dead push endpoint not removed', {
          endpointId: job.ep.id,
          err: reasonOf(e),
        });
      });
      this.#log.info('push endpoint gone; dropped', {
        phoneId: job.phoneId,
        endpointId: job.ep.id,
        status,
      });
      this.#emit({ type: 'dropped', endpointId: job.ep.id, phoneId: job.phoneId, status });
      return;
    }
    const transient = status === 'network' || status === 429 || status >= 500;
    if (!transient || job.attempt >= this.#retry.attempts || this.#closed) {
      this.#log.warn('push not delivered', {
        endpointId: job.ep.id,
        status,
        attempts: job.attempt,
      });
      this.#emit({ type: 'failed', endpointId: job.ep.id, status, attempt: job.attempt });
      return;
    }
    const backoff = Math.min(this.#retry.maxMs, this.#retry.initialMs * 2 ** (job.attempt - 1));
    const inMs = Math.min(this.#retry.maxMs, Math.max(backoff, (retryAfterS ?? 0) * 1000));
    this.#emit({ type: 'retry', endpointId: job.ep.id, status, attempt: job.attempt, inMs });
    const timer = this.#clock.setTimeout(() => {
      this.#retryTimers.delete(timer);
      // an endpoint removed meanwhile is not tried again
      if (!this.#phones.get(job.phoneId)?.endpoints.some((e) => e.id === job.ep.id)) return;
      job.attempt++;
      this.#attempt(job);
    }, inMs);
    this.#retryTimers.add(timer);
  }

  // ---- "unseen since" (issue #17, 4b) ---------------------------------------------------

  /**
   * The hub made an authenticated request (`fresh`), or is merely being watched
   * from now on (a phone registered). Ends an announced outage.
   */
  seen(deviceId: string, fresh = true): void {
    const after = this.#o.unseenAfterMs ?? DEFAULT_UNSEEN_AFTER_MS;
    if (after <= 0 || this.#closed) return;
    if (fresh || !this.#lastSeen.has(deviceId)) this.#lastSeen.set(deviceId, this.#clock.now());
    if (fresh && this.#announced.delete(deviceId))
      this.#log.info('hub seen again after an announced outage', { deviceId });
    if (!this.#watchTimers.has(deviceId)) this.#arm(deviceId, after);
  }

  #arm(deviceId: string, ms: number): void {
    const timer = this.#clock.setTimeout(() => {
      this.#watchTimers.delete(deviceId);
      this.#check(deviceId);
    }, ms);
    this.#watchTimers.set(deviceId, timer);
  }

  #check(deviceId: string): void {
    const after = this.#o.unseenAfterMs ?? DEFAULT_UNSEEN_AFTER_MS;
    const last = this.#lastSeen.get(deviceId);
    if (last === undefined || this.#closed) return;
    const phones = [...this.#phones.values()].filter((f) => f.deviceId === deviceId);
    if (phones.length === 0) {
      // nobody to tell: stop watching until a phone registers or the hub comes back
      this.#lastSeen.delete(deviceId);
      return;
    }
    const due = last + after - this.#clock.now();
    if (due > 0) {
      this.#arm(deviceId, due);
      return;
    }
    if (!this.#announced.has(deviceId)) {
      this.#announced.add(deviceId);
      const msg: PushMessage = { v: 1, t: 'unseen', deviceId, since: last, at: this.#clock.now() };
      const payload = encodePushMessage(msg) as Buffer;
      const n = this.#fanOut(
        phones.map((f) => f.phoneId),
        payload,
        'high',
      );
      this.#log.warn('hub unseen: pushed to its phones', { deviceId, since: last, endpoints: n });
      this.#emit({ type: 'unseen', deviceId, since: last, endpoints: n });
    }
    // keep watching at the same cadence: nothing more is sent until the hub is seen again
    this.#arm(deviceId, after);
  }

  /** Stop timers and wait for the requests in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#watchTimers.values()) t.cancel();
    this.#watchTimers.clear();
    for (const t of this.#retryTimers) t.cancel();
    this.#retryTimers.clear();
    await Promise.allSettled([...this.#inFlight]);
    await this.#writes;
  }
}
