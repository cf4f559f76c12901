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
 * State lives in the relay's record store (files, or PostgreSQL shared by
 * several relay processes; docs/decisions.md "Push state in the record store"):
 *
 *  - `push-vapid/key`: the relay's VAPID key pair, created once (under the
 *    cluster lock, so processes starting together agree); a secret record;
 *  - `push-endpoints/<phoneId>`: the endpoints of one phone account;
 *  - `push-seen/<deviceId>`: when a hub was last seen by any relay process
 *    (written at most every `unseenAfterMs / 6`) and whether its current
 *    outage was announced, so exactly one process announces it, once.
 *
 * Every process keeps a copy in memory, kept current by `applyRemote` (the
 * changes other processes commit); every read-modify-write runs under the
 * cluster lock of its record. "Unseen" is judged from the hub requests this
 * process served and the shared sightings; with other processes sharing the
 * store, a sighting may be up to one write interval older than the truth, so
 * the notice waits that much longer (never early).
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import webpush from 'web-push';
import { z } from 'zod';
import type { Clock } from '../base/clock.js';
import { SYSTEM_CLOCK } from '../base/clock.js';
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { DurableFs } from '../hw/os/fs.js';
import { encodePushMessage, padPushMessage } from '../protocol/push.js';
import type { PushMessage, PushRegistration } from '../protocol/push.js';
import type { Cluster } from './cluster.js';
import { RelayError } from './errors.js';
import type { RecordStore } from './store.js';
import { KeyedMutex } from './waiting.js';

/** Record namespaces of the push state. */
export const PUSH_NS = {
  vapid: 'push-vapid',
  endpoints: 'push-endpoints',
  seen: 'push-seen',
} as const;
const VAPID_ID = 'key';

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
  | { type: 'unseen'; deviceId: string; since: number; endpoints: number }
  /** Due, but this outage was already announced (by this relay process or another). */
  | { type: 'unseen-already'; deviceId: string; announcedAt: number };

export interface RelayPushOptions {
  /** Where push state lives (the relay's record store). */
  readonly records: RecordStore;
  /** Other relay processes sharing `records` (default: none). */
  readonly cluster?: Pick<Cluster, 'exclusive' | 'sync'>;
  /**
   * Where an earlier relay kept push state in files (`vapid.json`,
   * `endpoints/<phoneId>.json`): imported into the record store at open, then
   * removed. Needs `fs`.
   */
  readonly legacyDir?: string;
  readonly fs?: DurableFs;
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
type Vapid = z.infer<typeof VapidFile>;

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

/** When a hub was last seen by any relay process; `announcedAt` while its outage was pushed. */
const SeenRecord = z.strictObject({
  v: z.literal(1),
  deviceId: z.string(),
  seenAt: z.number(),
  announcedAt: z.number().optional(),
});
type SeenRecord = z.infer<typeof SeenRecord>;

const LEGACY_FILE_RE = /^[A-Za-z0-9_-]{4,64}\.json$/;

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
  readonly #unseenAfterMs: number;
  /** How often a process that sees a hub writes the sighting to the shared store. */
  readonly #seenWriteMs: number;
  /** The lock of a record: in this process and, with a cluster, across processes. */
  readonly #mutex: KeyedMutex;
  readonly #phones = new Map<string, EndpointsFile>();
  readonly #listeners = new Set<(e: PushEvent) => void>();
  /** deviceId -> last authenticated request this process served (its clock). */
  readonly #lastSeen = new Map<string, number>();
  /** deviceId -> when this process started watching it (a start is not a sighting). */
  readonly #watchFrom = new Map<string, number>();
  /** deviceId -> the shared sighting record (every process's). */
  readonly #seen = new Map<string, SeenRecord>();
  readonly #seenWrites = new Set<string>();
  readonly #watchTimers = new Map<string, { cancel(): void }>();
  readonly #retryTimers = new Set<{ cancel(): void }>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #vapid: Vapid | undefined;
  #closed = false;

  private constructor(o: RelayPushOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#clock = o.clock ?? SYSTEM_CLOCK;
    this.#transport = o.transport ?? fetchTransport;
    this.#retry = { ...DEFAULT_PUSH_RETRY, ...o.retry };
    this.#subject = o.subject ?? 'mailto:operator@vigil-relay.invalid';
    this.#unseenAfterMs = o.unseenAfterMs ?? DEFAULT_UNSEEN_AFTER_MS;
    this.#seenWriteMs = Math.max(1, Math.min(5 * 60_000, Math.floor(this.#unseenAfterMs / 6)));
    const cluster = o.cluster;
    this.#mutex = new KeyedMutex(cluster ? (key, fn) => cluster.exclusive(key, fn) : undefined);
  }

  static async open(o: RelayPushOptions): Promise<RelayPush> {
    const p = new RelayPush(o);
    if (o.legacyDir !== undefined && o.fs) await p.#importLegacy(o.legacyDir, o.fs);
    await p.#loadVapid();
    for (const { id, doc } of await o.records.loadAll(PUSH_NS.endpoints))
      p.#applyEndpoints(id, doc);
    for (const { id, doc } of await o.records.loadAll(PUSH_NS.seen)) p.#applySeen(id, doc);
    // Hubs whose phones take pushes are watched from now (their real last request may be unknown).
    for (const f of p.#phones.values()) p.#watch(f.deviceId);
    return p;
  }

  get vapidPublicKey(): string {
    return (this.#vapid as Vapid).publicKey;
  }

  onEvent(fn: (e: PushEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Files of an earlier relay (push state outside the record store): moved in, then removed. */
  async #importLegacy(dir: string, fs: DurableFs): Promise<void> {
    const rec = this.#o.records;
    await this.#mutex.run('push-import', async () => {
      const vapidFile = join(dir, 'vapid.json');
      const raw = await fs.readIfExists(vapidFile);
      if (raw !== undefined) {
        const r = VapidFile.safeParse(parseJson(raw));
        if ((await rec.loadAll(PUSH_NS.vapid)).length === 0 && r.success)
          await rec.put(PUSH_NS.vapid, VAPID_ID, r.data, { secret: true });
        await fs.remove(vapidFile, 'push-vapid');
      }
      const epDir = join(dir, 'endpoints');
      const names = await readdir(epDir).catch(() => [] as string[]);
      const have = new Set((await rec.loadAll(PUSH_NS.endpoints)).map((x) => x.id));
      for (const name of names) {
        if (!LEGACY_FILE_RE.test(name)) continue;
        const r = EndpointsFile.safeParse(parseJson(await fs.readIfExists(join(epDir, name))));
        if (r.success && !have.has(r.data.phoneId))
          await rec.put(PUSH_NS.endpoints, r.data.phoneId, r.data);
        await fs.remove(join(epDir, name), 'push-endpoints');
      }
      if (raw !== undefined || names.length > 0)
        this.#log.info('push state moved into the record store', { from: dir });
    });
  }

  async #loadVapid(): Promise<void> {
    const rec = this.#o.records;
    const parse = (docs: { id: string; doc: unknown }[]): Vapid | undefined => {
      const d = docs.find((x) => x.id === VAPID_ID);
      if (d === undefined) return undefined;
      const r = VapidFile.safeParse(d.doc);
      if (!r.success)
        throw new RelayError(
          500,
          'ECONFIG',
          `record ${PUSH_NS.vapid}/${VAPID_ID} is not a VAPID key (delete it to create a new key; phones must then subscribe again)`,
        );
      return r.data;
    };
    this.#vapid = parse(await rec.loadAll(PUSH_NS.vapid));
    if (this.#vapid) return;
    // one key for every relay process: created under the lock, after looking again
    this.#vapid = await this.#mutex.run(`${PUSH_NS.vapid}/${VAPID_ID}`, async () => {
      const had = parse(await rec.loadAll(PUSH_NS.vapid));
      if (had) return had;
      const k = webpush.generateVAPIDKeys();
      const v: Vapid = { v: 1, publicKey: k.publicKey, privateKey: k.privateKey };
      await rec.put(PUSH_NS.vapid, VAPID_ID, v, { secret: true });
      this.#log.info('VAPID key pair created', { publicKey: v.publicKey });
      return v;
    });
  }

  // ---- the shared state, as other processes change it -----------------------------------

  /**
   * Another relay process changed a record (`doc` undefined: deleted). Returns
   * whether it was a push record (handled here).
   */
  applyRemote(ns: string, id: string, doc: unknown): boolean {
    switch (ns) {
      case PUSH_NS.endpoints: {
        const deviceId = this.#applyEndpoints(id, doc);
        if (deviceId !== undefined) this.#watch(deviceId);
        return true;
      }
      case PUSH_NS.seen:
        this.#applySeen(id, doc);
        return true;
      case PUSH_NS.vapid: {
        const r = VapidFile.safeParse(doc);
        if (r.success) this.#vapid = r.data;
        return true;
      }
      default:
        return false;
    }
  }

  #applyEndpoints(phoneId: string, doc: unknown): string | undefined {
    if (doc === undefined) {
      this.#phones.delete(phoneId);
      return undefined;
    }
    const r = EndpointsFile.safeParse(doc);
    if (!r.success || r.data.phoneId !== phoneId) {
      this.#log.warn('push endpoints record invalid; ignored', { phoneId });
      return undefined;
    }
    if (r.data.endpoints.length === 0) this.#phones.delete(phoneId);
    else this.#phones.set(phoneId, r.data);
    return r.data.deviceId;
  }

  #applySeen(deviceId: string, doc: unknown): void {
    if (doc === undefined) {
      this.#seen.delete(deviceId);
      return;
    }
    const r = SeenRecord.safeParse(doc);
    if (r.success && r.data.deviceId === deviceId) this.#seen.set(deviceId, r.data);
    else this.#log.warn('push sighting record invalid; ignored', { deviceId });
  }

  /** Write one phone's endpoints (all gone: the record goes). Call under its lock. */
  async #save(f: EndpointsFile): Promise<void> {
    if (f.endpoints.length === 0) {
      await this.#o.records.delete(PUSH_NS.endpoints, f.phoneId);
      this.#phones.delete(f.phoneId);
    } else {
      await this.#o.records.put(PUSH_NS.endpoints, f.phoneId, f);
      this.#phones.set(f.phoneId, f);
    }
  }

  #phoneLock(phoneId: string): string {
    return `${PUSH_NS.endpoints}/${phoneId}`;
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
    const r = await this.#mutex.run(this.#phoneLock(phoneId), async () => {
      const cur = this.#phones.get(phoneId) ?? {
        v: 1 as const,
        phoneId,
        deviceId,
        endpoints: [],
      };
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
      await this.#save({ ...cur, endpoints: [...cur.endpoints.filter((e) => e.id !== id), ep] });
      return { id, created: !exists };
    });
    this.#watch(deviceId);
    this.#log.info('push endpoint registered', {
      phoneId,
      endpointId: id,
      origin: new URL(reg.endpoint).origin,
    });
    return r;
  }

  list(phoneId: string): { id: string; origin: string; createdAt: number }[] {
    return (this.#phones.get(phoneId)?.endpoints ?? []).map((e) => ({
      id: e.id,
      origin: new URL(e.endpoint).origin,
      createdAt: e.createdAt,
    }));
  }

  async remove(phoneId: string, id: string): Promise<boolean> {
    return this.#mutex.run(this.#phoneLock(phoneId), async () => {
      const cur = this.#phones.get(phoneId);
      if (!cur?.endpoints.some((e) => e.id === id)) return false;
      await this.#save({ ...cur, endpoints: cur.endpoints.filter((e) => e.id !== id) });
      return true;
    });
  }

  /** The phone account is gone: so are its endpoints. */
  async forgetPhone(phoneId: string): Promise<void> {
    await this.#mutex.run(this.#phoneLock(phoneId), async () => {
      const cur = this.#phones.get(phoneId);
      if (cur) await this.#save({ ...cur, endpoints: [] });
    });
  }

  endpointCount(phoneId: string): number {
    return this.#phones.get(phoneId)?.endpoints.length ?? 0;
  }

  // ---- delivery ------------------------------------------------------------------------

  /**
   * A hub notice was stored as mailbox item `seq` (group `group`) for `phoneIds`:
   * push its ciphertext to their endpoints (those registered through any relay
   * process: it first catches up with the others). Resolves with how many
   * deliveries started; 0 also when the notice is too large for a push (the
   * phones get it from the mailbox). Never rejects.
   */
  async notice(
    phoneIds: readonly string[],
    seq: number,
    group: string,
    ciphertext: Uint8Array,
  ): Promise<number> {
    const encoded = encodePushMessage({
      v: 1,
      t: 'notice',
      seq,
      group,
      mls: Buffer.from(ciphertext).toString('base64url'),
    });
    const payload = encoded && padPushMessage(encoded);
    if (!payload) {
      this.#log.info('notice too large to push; it waits in the mailbox', {
        seq,
        bytes: ciphertext.length,
      });
      return 0;
    }
    try {
      await this.#o.cluster?.sync();
    } catch (e) {
      // the feed is broken (the relay stops serving): push to the endpoints known here
      this.#log.warn('push: could not catch up with the other relays', { err: reasonOf(e) });
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

  #track(p: Promise<unknown>): void {
    const q = p.finally(() => this.#inFlight.delete(q));
    this.#inFlight.add(q);
  }

  #attempt(job: Job): void {
    if (this.#closed) return;
    this.#track(this.#send(job));
  }

  async #send(job: Job): Promise<void> {
    const vapid = this.#vapid as Vapid;
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
      // the subscription is gone (RFC 8030 §7.3): never try it again, through any relay
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
      // an endpoint removed meanwhile (here or through another relay) is not tried again
      if (!this.#phones.get(job.phoneId)?.endpoints.some((e) => e.id === job.ep.id)) return;
      job.attempt++;
      this.#attempt(job);
    }, inMs);
    this.#retryTimers.add(timer);
  }

  // ---- "unseen since" (issue #17, 4b) ---------------------------------------------------

  /**
   * The hub made an authenticated request to this process. Ends an announced
   * outage; shares the sighting with the other processes (at most every
   * `unseenAfterMs / 6`, or at once after an announced outage).
   */
  seen(deviceId: string): void {
    if (this.#unseenAfterMs <= 0 || this.#closed) return;
    const now = this.#clock.now();
    this.#lastSeen.set(deviceId, now);
    const rec = this.#seen.get(deviceId);
    if (
      !this.#seenWrites.has(deviceId) &&
      (rec === undefined || rec.announcedAt !== undefined || now - rec.seenAt >= this.#seenWriteMs)
    ) {
      this.#seenWrites.add(deviceId);
      this.#track(
        this.#mutex
          .run(`${PUSH_NS.seen}/${deviceId}`, async () => {
            const cur = this.#seen.get(deviceId);
            const at = Math.max(this.#lastSeen.get(deviceId) ?? now, cur?.seenAt ?? 0);
            const next: SeenRecord = { v: 1, deviceId, seenAt: at };
            await this.#o.records.put(PUSH_NS.seen, deviceId, next);
            this.#seen.set(deviceId, next);
            if (cur?.announcedAt !== undefined)
              this.#log.info('hub seen again after an announced outage', { deviceId });
          })
          .catch((e: unknown) => {
            this.#log.warn('hub sighting not shared', { deviceId, err: reasonOf(e) });
          })
          .finally(() => this.#seenWrites.delete(deviceId)),
      );
    }
    this.#watch(deviceId);
  }

  /** Watch a hub (a phone registered, or the relay started with its phones' endpoints). */
  #watch(deviceId: string): void {
    if (this.#unseenAfterMs <= 0 || this.#closed) return;
    if (!this.#watchFrom.has(deviceId)) this.#watchFrom.set(deviceId, this.#clock.now());
    if (!this.#watchTimers.has(deviceId)) this.#arm(deviceId, this.#unseenAfterMs);
  }

  /**
   * When the hub's outage is due to be announced: `unseenAfterMs` after the
   * latest of its last request here, the start of watching, and the shared
   * sighting (plus one write interval when other processes may have seen it
   * since they last wrote).
   */
  #deadline(deviceId: string): number {
    const slack = this.#o.cluster ? this.#seenWriteMs : 0;
    const shared = this.#seen.get(deviceId)?.seenAt;
    return (
      Math.max(
        this.#lastSeen.get(deviceId) ?? 0,
        this.#watchFrom.get(deviceId) ?? 0,
        shared === undefined ? 0 : shared + slack,
      ) + this.#unseenAfterMs
    );
  }

  #arm(deviceId: string, ms: number): void {
    const timer = this.#clock.setTimeout(() => {
      this.#watchTimers.delete(deviceId);
      this.#track(
        this.#check(deviceId).catch((e: unknown) => {
          this.#log.warn('hub outage check failed', { deviceId, err: reasonOf(e) });
          if (!this.#watchTimers.has(deviceId)) this.#arm(deviceId, this.#seenWriteMs);
        }),
      );
    }, ms);
    this.#watchTimers.set(deviceId, timer);
  }

  #phonesOf(deviceId: string): EndpointsFile[] {
    return [...this.#phones.values()].filter((f) => f.deviceId === deviceId);
  }

  async #check(deviceId: string): Promise<void> {
    if (this.#closed) return;
    if (this.#phonesOf(deviceId).length === 0) {
      // nobody to tell: stop watching until a phone registers or the hub comes back
      this.#lastSeen.delete(deviceId);
      this.#watchFrom.delete(deviceId);
      return;
    }
    const due = this.#deadline(deviceId) - this.#clock.now();
    if (due > 0) {
      this.#arm(deviceId, due);
      return;
    }
    await this.#mutex.run(`${PUSH_NS.seen}/${deviceId}`, async () => {
      // under the lock, every sighting another process committed is here
      const dueNow = this.#deadline(deviceId) - this.#clock.now();
      const rec = this.#seen.get(deviceId);
      if (this.#closed || dueNow > 0) return;
      if (rec?.announcedAt !== undefined) {
        this.#emit({ type: 'unseen-already', deviceId, announcedAt: rec.announcedAt });
        return;
      }
      const now = this.#clock.now();
      const since =
        Math.max(this.#lastSeen.get(deviceId) ?? 0, rec?.seenAt ?? 0) ||
        (this.#watchFrom.get(deviceId) ?? now);
      const announced: SeenRecord = { v: 1, deviceId, seenAt: since, announcedAt: now };
      await this.#o.records.put(PUSH_NS.seen, deviceId, announced);
      this.#seen.set(deviceId, announced);
      const msg: PushMessage = { v: 1, t: 'unseen', deviceId, since, at: now };
      const payload = padPushMessage(encodePushMessage(msg) as Buffer);
      const n = this.#fanOut(
        this.#phonesOf(deviceId).map((f) => f.phoneId),
        payload,
        'high',
      );
      this.#log.warn('hub unseen: pushed to its phones', { deviceId, since, endpoints: n });
      this.#emit({ type: 'unseen', deviceId, since, endpoints: n });
    });
    // keep watching: nothing more is sent until the hub is seen again
    // (`close()` may have run during the await: read the flag afresh)
    if (!this.#isClosed() && !this.#watchTimers.has(deviceId)) {
      const rem = this.#deadline(deviceId) - this.#clock.now();
      this.#arm(deviceId, rem > 0 ? rem : this.#unseenAfterMs);
    }
  }

  #isClosed(): boolean {
    return this.#closed;
  }

  /** Stop timers and wait for the requests and writes in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#watchTimers.values()) t.cancel();
    this.#watchTimers.clear();
    for (const t of this.#retryTimers) t.cancel();
    this.#retryTimers.clear();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }
}

function parseJson(raw: Buffer | undefined): unknown {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
