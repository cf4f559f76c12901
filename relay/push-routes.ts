/**
 * The relay's push routes (docs/relay.md "Push"), mapped onto RelayPush by
 * relay/server.ts, which hands in its request helpers (authentication,
 * throttling, strict JSON bodies) so these routes follow the same rules as
 * every other:
 *
 *   GET    /v1/push/vapid              anyone  -> {publicKey}  (the relay's VAPID key, base64url)
 *   PUT    /v1/push/endpoints          phone   {endpoint, keys:{p256dh, auth}} -> {id, created}
 *   GET    /v1/push/endpoints          phone   -> {endpoints:[{id, origin, createdAt}]}
 *   DELETE /v1/push/endpoints/:id      phone
 *
 * Endpoints belong to the phone account that registered them: no route takes
 * another phone's id.
 */
import type { ServerResponse } from 'node:http';
import type { z } from 'zod';
import { PushEndpointId, PushRegistrationBody } from '../protocol/push.js';
import type { Principal } from './accounts.js';
import { RelayError } from './errors.js';
import type { RelayPush } from './push.js';

export interface PushRouteContext {
  readonly method: string;
  /** Path segments after the leading `/v1/push`. */
  readonly rest: readonly string[];
  readonly query: Readonly<Record<string, string>>;
  readonly res: ServerResponse;
  readonly push: RelayPush | undefined;
  readonly authenticate: () => Promise<Principal>;
  readonly throttleAddress: () => void;
  readonly readJson: <T>(schema: z.ZodType<T>) => Promise<T>;
  readonly parse: <T>(schema: z.ZodType<T>, v: unknown) => T;
  readonly send: (status: number, body: unknown) => void;
}

function phoneOnly(p: Principal): void {
  if (p.kind !== 'phone')
    throw new RelayError(403, 'EFORBIDDEN', 'push endpoints are registered by phones');
}

/** Handle a `/v1/push/...` request; false when no push route matches (the caller answers 404). */
export async function handlePushRoute(c: PushRouteContext): Promise<boolean> {
  const [what, id, ...more] = c.rest;
  if (more.length > 0) return false;
  if (Object.keys(c.query).length > 0)
    throw new RelayError(400, 'EINVALID', 'no query parameters allowed');
  const push = (): RelayPush => {
    if (!c.push)
      throw new RelayError(501, 'ENOPUSH', 'this relay does not send push notifications');
    return c.push;
  };
  if (what === 'vapid' && id === undefined && c.method === 'GET') {
    c.throttleAddress();
    c.send(200, { publicKey: push().vapidPublicKey });
    return true;
  }
  if (what !== 'endpoints') return false;
  if (id === undefined && c.method === 'PUT') {
    const p = await c.authenticate();
    phoneOnly(p);
    const body = await c.readJson(PushRegistrationBody);
    const r = await push().register(p.id, p.deviceId, body);
    c.send(r.created ? 201 : 200, r);
    return true;
  }
  if (id === undefined && c.method === 'GET') {
    const p = await c.authenticate();
    phoneOnly(p);
    c.send(200, { endpoints: push().list(p.id) });
    return true;
  }
  if (id !== undefined && c.method === 'DELETE') {
    const p = await c.authenticate();
    phoneOnly(p);
    const epId = c.parse(PushEndpointId, id);
    if (!(await push().remove(p.id, epId)))
      throw new RelayError(404, 'ENOTFOUND', 'no such push endpoint for this phone');
    c.send(200, { ok: true });
    return true;
  }
  return false;
}
