/**
 * A typed client for the relay's HTTP API, used by the hub's uplink, the
 * companion and the tests. Speaks HTTP through base/http.ts (node:http, not the
 * platform `fetch`: the hub does not load undici). Errors from the relay
 * come back as `RelayHttpError` carrying the status and the relay's error code;
 * network failures as `RelayUnreachable`, whose one-line message names the network cause
 * (`request failed (ECONNREFUSED)`).
 */
import { networkCause, reasonOf, VigilError } from '../base/errors.js';
import { httpRequest } from '../base/http.js';
import type { HttpAnswer, HttpRequester } from '../base/http.js';
import {
  CredentialResponse,
  ErrorBody,
  H,
  ItemList,
  LiveInfo,
  PhoneList,
  UploadStatus,
} from './relay-api.js';
import type { ItemInfo, ItemKindWire } from './relay-api.js';
import { PushEndpointList, PushRegistered, VapidKeyResponse } from './push.js';
import type { PushRegistration } from './push.js';

export class RelayHttpError extends VigilError {
  readonly status: number;
  readonly relayCode: string;
  readonly body: unknown;
  constructor(status: number, relayCode: string, message: string, body: unknown) {
    super('ERELAY', `relay answered ${status} ${relayCode}: ${message}`);
    this.name = 'RelayHttpError';
    this.status = status;
    this.relayCode = relayCode;
    this.body = body;
  }
}

export class RelayUnreachable extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EUNREACHABLE', message, options);
    this.name = 'RelayUnreachable';
  }
}

export interface RelayClientOptions {
  readonly url: string;
  /** Bearer token from registration or rendezvous (`d.…` or `p.…`). */
  readonly token?: string;
  /** The HTTP client (default base/http.ts's `httpRequest`); tests and the hub wrap it. */
  readonly http?: HttpRequester;
  /** Per-request timeout for non-long-poll calls (ms). */
  readonly timeoutMs?: number;
  /** Largest answer accepted (bytes; default 64 MiB, the relay sends at most 8 per read). */
  readonly maxResponseBytes?: number;
}

export interface AppendParams {
  readonly group: string;
  readonly kind: ItemKindWire;
  readonly offset: number;
  readonly final: boolean;
  readonly to?: readonly string[];
}

interface ReqInit {
  body?: Uint8Array | string;
  json?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  waitMs?: number;
}

export class RelayClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #http: HttpRequester;
  readonly #timeoutMs: number;
  readonly #maxBytes: number | undefined;

  constructor(opts: RelayClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.#token = opts.token;
    this.#http = opts.http ?? httpRequest;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#maxBytes = opts.maxResponseBytes;
  }

  withToken(token: string): RelayClient {
    return new RelayClient({
      url: this.url,
      token,
      http: this.#http,
      timeoutMs: this.#timeoutMs,
      ...(this.#maxBytes !== undefined ? { maxResponseBytes: this.#maxBytes } : {}),
    });
  }

  async #req(method: string, path: string, init: ReqInit = {}): Promise<HttpAnswer> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    let body: Uint8Array | string | undefined = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    } else if (body !== undefined) headers['content-type'] = 'application/octet-stream';
    const timeout = AbortSignal.timeout(this.#timeoutMs + (init.waitMs ?? 0));
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    let res: HttpAnswer;
    try {
      res = await this.#http(`${this.url}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal,
        ...(this.#maxBytes !== undefined ? { maxBytes: this.#maxBytes } : {}),
      });
    } catch (e) {
      if (init.signal?.aborted) throw e;
      const cause = networkCause(e);
      throw new RelayUnreachable(
        `relay ${this.url} unreachable: ${reasonOf(e)}${cause !== undefined ? ` (${cause})` : ''}`,
        { cause: e },
      );
    }
    if (res.status >= 300 && res.status < 400) {
      // not followed: a PUT's body is not sent twice, and the configured URL should be the real one
      res.discard();
      const to = res.header('location');
      throw new RelayHttpError(
        res.status,
        'EREDIRECT',
        `redirected${to !== undefined ? ` to ${to}` : ''}; configure the relay's final URL`,
        undefined,
      );
    }
    if (res.status >= 400) {
      const text = await res.text().catch(() => '');
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      const eb = ErrorBody.safeParse(parsed);
      throw new RelayHttpError(
        res.status,
        eb.success ? eb.data.error : 'EHTTP',
        eb.success ? eb.data.message : text.slice(0, 200),
        parsed,
      );
    }
    return res;
  }

  async #json(method: string, path: string, init: ReqInit = {}): Promise<unknown> {
    const res = await this.#req(method, path, init);
    return res.json();
  }

  async health(): Promise<boolean> {
    const r = await this.#req('GET', '/v1/health');
    r.discard();
    return r.ok;
  }

  async registerDevice(deviceId: string, enrollToken?: string): Promise<CredentialResponse> {
    return CredentialResponse.parse(
      await this.#json('POST', '/v1/devices', {
        json: { deviceId },
        ...(enrollToken !== undefined ? { headers: { 'x-vigil-enroll': enrollToken } } : {}),
      }),
    );
  }

  async offerRendezvous(token: string, ttlMs?: number): Promise<void> {
    await this.#json('PUT', '/v1/rendezvous', {
      json: ttlMs === undefined ? { token } : { token, ttlMs },
    });
  }

  async claimRendezvous(token: string): Promise<CredentialResponse> {
    return CredentialResponse.parse(
      await this.#json('POST', '/v1/rendezvous/claim', { json: { token } }),
    );
  }

  async phones(): Promise<{ phoneId: string; createdAt: number }[]> {
    return PhoneList.parse(await this.#json('GET', '/v1/phones')).phones;
  }

  async removePhone(phoneId: string): Promise<void> {
    await this.#json('DELETE', `/v1/phones/${encodeURIComponent(phoneId)}`);
  }

  async append(
    itemId: string,
    p: AppendParams,
    bytes: Uint8Array,
    signal?: AbortSignal,
  ): Promise<UploadStatus> {
    const qs = new URLSearchParams({
      group: p.group,
      kind: p.kind,
      offset: String(p.offset),
      final: p.final ? '1' : '0',
    });
    if (p.to) qs.set('to', p.to.join(','));
    return UploadStatus.parse(
      await this.#json('PUT', `/v1/items/${encodeURIComponent(itemId)}?${qs.toString()}`, {
        body: bytes,
        ...(signal ? { signal } : {}),
      }),
    );
  }

  async uploadStatus(itemId: string): Promise<UploadStatus | undefined> {
    try {
      return UploadStatus.parse(await this.#json('GET', `/v1/items/${encodeURIComponent(itemId)}`));
    } catch (e) {
      if (e instanceof RelayHttpError && e.status === 404) return undefined;
      throw e;
    }
  }

  async appendLive(
    itemId: string,
    index: number,
    final: boolean,
    bytes: Uint8Array,
    signal?: AbortSignal,
  ): Promise<LiveInfo> {
    return LiveInfo.parse(
      await this.#json(
        'POST',
        `/v1/live/${encodeURIComponent(itemId)}?index=${index}&final=${final ? 1 : 0}`,
        { body: bytes, ...(signal ? { signal } : {}) },
      ),
    );
  }

  async list(
    opts: { after?: number; waitMs?: number; group?: string; signal?: AbortSignal } = {},
  ): Promise<{ items: ItemInfo[]; cursor: number }> {
    const qs = new URLSearchParams();
    if (opts.after !== undefined) qs.set('after', String(opts.after));
    if (opts.waitMs !== undefined) qs.set('wait', String(opts.waitMs));
    if (opts.group !== undefined) qs.set('group', opts.group);
    return ItemList.parse(
      await this.#json('GET', `/v1/mailbox?${qs.toString()}`, {
        ...(opts.signal ? { signal: opts.signal } : {}),
        waitMs: opts.waitMs ?? 0,
      }),
    );
  }

  /** Bytes of an item from `offset`; `complete` and `received` describe the whole item. */
  async read(
    seq: number,
    opts: { offset?: number; waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<{ data: Buffer; received: number; complete: boolean }> {
    const qs = new URLSearchParams();
    if (opts.offset !== undefined) qs.set('offset', String(opts.offset));
    if (opts.waitMs !== undefined) qs.set('wait', String(opts.waitMs));
    const res = await this.#req('GET', `/v1/mailbox/${seq}?${qs.toString()}`, {
      ...(opts.signal ? { signal: opts.signal } : {}),
      waitMs: opts.waitMs ?? 0,
    });
    const data = await res.bytes();
    return {
      data,
      received: Number(res.header(H.received)),
      complete: res.header(H.complete) === '1',
    };
  }

  /** The whole item once complete (reads in pieces; waits while it is still uploading). */
  async readAll(
    seq: number,
    opts: { waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<Buffer> {
    const parts: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const r = await this.read(seq, {
        offset,
        waitMs: opts.waitMs ?? 10_000,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      parts.push(r.data);
      offset += r.data.length;
      if (r.complete && offset >= r.received) return Buffer.concat(parts);
    }
  }

  async ack(seq: number): Promise<void> {
    await this.#json('DELETE', `/v1/mailbox/${seq}`);
  }

  async postUp(group: string, bytes: Uint8Array): Promise<{ seq: number }> {
    const r = (await this.#json('POST', `/v1/up/${encodeURIComponent(group)}`, {
      body: bytes,
    })) as { seq: number };
    return r;
  }

  // ---- push (protocol/push.ts; docs/relay.md "Push") ----------------------------------

  /** The relay's VAPID public key (base64url): the `applicationServerKey` to subscribe with. */
  async pushVapidKey(): Promise<string> {
    return VapidKeyResponse.parse(await this.#json('GET', '/v1/push/vapid')).publicKey;
  }

  /** Register (or refresh) a push endpoint for this phone. */
  async registerPush(reg: PushRegistration): Promise<{ id: string; created: boolean }> {
    return PushRegistered.parse(await this.#json('PUT', '/v1/push/endpoints', { json: reg }));
  }

  async pushEndpoints(): Promise<{ id: string; origin: string; createdAt: number }[]> {
    return PushEndpointList.parse(await this.#json('GET', '/v1/push/endpoints')).endpoints;
  }

  async removePush(id: string): Promise<void> {
    await this.#json('DELETE', `/v1/push/endpoints/${encodeURIComponent(id)}`);
  }

  async liveInfo(): Promise<LiveInfo> {
    return LiveInfo.parse(await this.#json('GET', '/v1/live/info'));
  }

  /** Next live record (undefined when the wait ran out). */
  async readLive(
    opts: { itemId?: string; after?: number; waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<{ itemId: string; index: number; final: boolean; data: Buffer } | undefined> {
    const qs = new URLSearchParams();
    if (opts.itemId !== undefined) qs.set('item', opts.itemId);
    if (opts.after !== undefined) qs.set('after', String(opts.after));
    if (opts.waitMs !== undefined) qs.set('wait', String(opts.waitMs));
    const res = await this.#req('GET', `/v1/live?${qs.toString()}`, {
      ...(opts.signal ? { signal: opts.signal } : {}),
      waitMs: opts.waitMs ?? 0,
    });
    if (res.status === 204) {
      res.discard();
      return undefined;
    }
    const data = await res.bytes();
    return {
      itemId: res.header(H.itemId) ?? '',
      index: Number(res.header(H.index)),
      final: res.header(H.final) === '1',
      data,
    };
  }
}
