/**
 * The viewer's daily-review routes (the page's status strip, delete, the test
 * event and the phones page), apart from the media and live routes of
 * server.ts:
 *
 *   GET    /api/status          {hub, relay, device, features}: the hub's liveness and
 *                               health (hub-link), the last contact with the relay and
 *                               "unreachable since" (relay-contact), what the hub reports
 *                               of itself where known (state, camera, encoder, storage)
 *   DELETE /api/items/:seq      delete an event: acknowledged at the relay (so it is not
 *                               fetched again), its key forgotten, removed here, with its
 *                               thumbnail unless another event shows it
 *   POST   /api/test-event      development only: the hub records an event now
 *   GET    /api/phones          {admin, phones: [{phoneId, self, admin}]}
 *   POST   /api/phones/invite   {invite, command}: an invite for another phone (admin)
 *   DELETE /api/phones/:id      remove a phone (admin)
 *
 * A request that changes something must say `content-type: application/json`
 * (a cross-site form cannot, and the access cookie is SameSite=Strict anyway).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { reasonOf } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import { RelayHttpError } from '../../protocol/relay-client.js';
import type { CompanionCrypto } from '../crypto.js';
import type { HubLink } from '../hub-link.js';
import type { PhoneEntry, InviteText } from '../phones.js';
import { PhonesError } from '../phones.js';
import type { RelayContact } from '../relay-contact.js';
import type { ItemStore } from '../store.js';
import { eventsOf } from './events.js';

/** What the hub says of itself, where the viewer can know it (the local run: in process). */
export interface DeviceReport {
  /** The supervisor's state (`running`, `degraded`, ...) and its one-line summary. */
  readonly state: string;
  readonly summary?: string;
  /** e.g. `simulated 640x480 YUYV` */
  readonly camera: string | null;
  /** The encoder path chosen and why, e.g. `software (no hardware encoder found)`. */
  readonly encoder: string | null;
  readonly storage: {
    readonly path: string;
    readonly freeBytes: number;
    readonly totalBytes: number;
    /** e.g. `plain directory (development)`, `LUKS2 open` */
    readonly kind: string;
  } | null;
}

/** Phone management (app/phones.ts PhonesAdmin). */
export interface PhonesPort {
  readonly admin: boolean;
  list(): Promise<PhoneEntry[]>;
  invite(): Promise<InviteText>;
  remove(phoneId: string): Promise<void>;
}

export interface ReviewOptions {
  readonly store: ItemStore;
  readonly crypto: CompanionCrypto;
  /** Acknowledges at the relay (RelayClient.ack); without it deletes are local only. */
  readonly ack?: (seq: number) => Promise<void>;
  readonly link?: HubLink;
  readonly contact?: RelayContact;
  readonly device?: () => DeviceReport | Promise<DeviceReport>;
  /** Development only: make the hub record an event now (the page shows a button). */
  readonly testEvent?: () => void | Promise<void>;
  readonly phones?: PhonesPort;
}

type Json = (res: ServerResponse, status: number, body: unknown) => void;

function isJson(req: IncomingMessage): boolean {
  return (req.headers['content-type'] ?? '').startsWith('application/json');
}

const PHONE_ID = /^\/api\/phones\/([0-9a-f]{2,64})$/;
const ITEM = /^\/api\/items\/([1-9][0-9]{0,14})$/;

/**
 * Serve `p` when it is one of the review routes; false when it is not (the
 * caller goes on). `forgetMedia` drops a deleted item from the media cache.
 */
export async function reviewRoute(
  o: ReviewOptions,
  log: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  p: string,
  json: Json,
  forgetMedia: (seq: number) => void,
): Promise<boolean> {
  const method = req.method ?? 'GET';
  const changes = method === 'POST' || method === 'DELETE';
  const route =
    p === '/api/status' ||
    p === '/api/test-event' ||
    p === '/api/phones' ||
    p === '/api/phones/invite' ||
    PHONE_ID.test(p) ||
    (method === 'DELETE' && ITEM.test(p));
  if (!route) return false;
  if (changes && !isJson(req)) {
    json(res, 415, { message: 'expected content-type: application/json' });
    return true;
  }
  if (p === '/api/status' && method === 'GET') {
    let device: DeviceReport | null = null;
    try {
      device = o.device ? await o.device() : null;
    } catch (e) {
      log.warn('hub report failed', { err: reasonOf(e) });
    }
    json(res, 200, {
      hub: o.link?.status() ?? null,
      relay: o.contact?.status() ?? null,
      device,
      features: {
        testEvent: o.testEvent !== undefined,
        phones: o.phones !== undefined,
        admin: o.phones?.admin ?? false,
        delete: true,
      },
    });
    return true;
  }
  const item = ITEM.exec(p);
  if (item && method === 'DELETE') {
    await deleteEvent(o, log, Number(item[1]), res, json, forgetMedia);
    return true;
  }
  if (p === '/api/test-event' && method === 'POST') {
    if (!o.testEvent) {
      json(res, 404, { message: 'test events exist in development mode only' });
      return true;
    }
    try {
      await o.testEvent();
    } catch (e) {
      json(res, 409, { message: `no test event: ${reasonOf(e)}` });
      return true;
    }
    log.info('test event requested from the viewer');
    json(res, 202, { message: 'test event started: the clip appears when it is recorded' });
    return true;
  }
  const phones = o.phones;
  if (!phones) {
    json(res, 503, { message: 'phone management needs a paired phone (MLS)' });
    return true;
  }
  try {
    if (p === '/api/phones' && method === 'GET') {
      json(res, 200, { admin: phones.admin, phones: await phones.list() });
      return true;
    }
    if (p === '/api/phones/invite' && method === 'POST') {
      const invite = await phones.invite();
      json(res, 200, {
        invite,
        command: `vigil app pair --invite '${JSON.stringify(invite)}'`,
        expiresAt: invite.invite.expiresAt,
      });
      return true;
    }
    const id = PHONE_ID.exec(p)?.[1];
    if (id !== undefined && method === 'DELETE') {
      await phones.remove(id);
      log.info('phone removed from the viewer', { phoneId: id });
      json(res, 200, { removed: id });
      return true;
    }
  } catch (e) {
    if (!(e instanceof PhonesError)) throw e;
    const status = e.code === 'ENOT_ADMIN' ? 403 : 504;
    json(res, status, { message: e.message });
    return true;
  }
  json(res, 405, { message: `${method} is not allowed on ${p}` });
  return true;
}

async function deleteEvent(
  o: ReviewOptions,
  log: Logger,
  seq: number,
  res: ServerResponse,
  json: Json,
  forgetMedia: (seq: number) => void,
): Promise<void> {
  const items = await o.store.list();
  const events = eventsOf(items);
  const ev = events.find((e) => e.seq === seq);
  if (!ev) {
    json(res, 404, { message: `no event ${seq}` });
    return;
  }
  const thumb = ev.thumbnail;
  const shared = thumb !== null && events.some((e) => e.seq !== seq && e.thumbnail === thumb);
  const seqs = thumb !== null && !shared ? [seq, thumb] : [seq];
  for (const s of seqs) {
    const it = items.find((i) => i.seq === s);
    if (!it) continue;
    // the relay first: an item it still holds must not come back with the next sync
    if (o.ack)
      try {
        await o.ack(s);
      } catch (e) {
        if (!(e instanceof RelayHttpError && e.status === 404)) {
          json(res, 503, {
            message: `not deleted: the relay did not take the acknowledgement (${reasonOf(e)}); try again`,
          });
          return;
        }
        // already acknowledged when it was stored: nothing left there
      }
    await o.crypto.forget?.(it.summary.itemId);
    await o.store.remove(s);
    forgetMedia(s);
  }
  log.info('event deleted from the viewer', { seq, items: seqs });
  json(res, 200, { deleted: seqs });
}
