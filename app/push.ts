/**
 * The phone's side of push notifications (protocol/push.ts, docs/app.md "Push"):
 *
 *  - `openPush`: a push message as the push service handed it over (RFC 8291
 *    already removed by the browser, the UnifiedPush distributor or the OS) is
 *    either a hub notice — MLS ciphertext, opened here with the phone's
 *    notification group, so only the hub can have written it — or the relay's
 *    own "unseen since" notice, which nothing authenticates: it is labelled
 *    relay-reported and never shown as the hub's word;
 *  - `NoticeFeed`: the notices this companion received (mailbox or push), for
 *    the viewer's browser notifications;
 *  - `vigil app push ...`: register, list and remove endpoints at the relay,
 *    print the relay's VAPID key, open a received push message.
 */
import { UsageError } from '../base/command.js';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { NoticeMessage } from '../protocol/e2ee-frames.js';
import { PushRegistrationBody, decodePushMessage } from '../protocol/push.js';
import type { PushRegistration } from '../protocol/push.js';
import type { RelayClient } from '../protocol/relay-client.js';
import { RelayHttpError } from '../protocol/relay-client.js';
import type { Inbound } from './e2ee/phone.js';

/** What a push message said, ready to show. */
export interface OpenedPush {
  /** `hub`: sealed by the hub (MLS); `relay`: the relay's own word (untrusted). */
  readonly source: 'hub' | 'relay';
  readonly trusted: boolean;
  readonly title: string;
  readonly body: string;
  /** Time of the event (the hub's notice) or of the relay's report. */
  readonly at: number;
  readonly notice?: NoticeMessage;
  /** Relay mailbox item of a hub notice (acknowledged once opened). */
  readonly seq?: number;
  /** A cover push (privacy mode): nothing to show (docs/app.md "Privacy modes"). */
  readonly cover?: boolean;
}

export class PushOpenError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EPUSH', message, options);
    this.name = 'PushOpenError';
  }
}

export function noticeTitle(n: NoticeMessage): string {
  return n.kind === 'motion' ? 'Vigil: motion' : `Vigil: ${n.kind}`;
}

export function noticeBody(n: NoticeMessage): string {
  return `${n.text} at ${new Date(n.at).toLocaleString()}`;
}

/** The label the phone shows for the relay's "unseen since" notice. */
export function unseenBody(since: number): string {
  return `relay-reported (not verified by the hub): the hub has not been seen since ${new Date(since).toISOString()}`;
}

export interface OpenPushDeps {
  /** Open a hub message with MLS (E2eeCrypto.receiveInbound). */
  readonly receive: (bytes: Uint8Array) => Promise<Inbound>;
  /** This phone's hub (relay device id): an "unseen" notice for another hub is refused. */
  readonly deviceId?: string;
  /** Acknowledge the notice's mailbox item (RelayClient.ack); a missing item is fine. */
  readonly ack?: (seq: number) => Promise<void>;
}

/** Open one push message. Throws PushOpenError with a one-line reason when it is not one of ours. */
export async function openPush(plain: Uint8Array, d: OpenPushDeps): Promise<OpenedPush> {
  const m = decodePushMessage(plain);
  if (!m.ok) throw new PushOpenError(m.reason);
  const msg = m.value;
  if (msg.t === 'unseen') {
    if (d.deviceId !== undefined && msg.deviceId !== d.deviceId)
      throw new PushOpenError(`"unseen" notice for another hub (${msg.deviceId})`);
    return {
      source: 'relay',
      trusted: false,
      title: 'Vigil: hub not seen (relay-reported)',
      body: unseenBody(msg.since),
      at: msg.at,
    };
  }
  let inbound: Inbound;
  try {
    inbound = await d.receive(Buffer.from(msg.mls, 'base64url'));
  } catch (e) {
    throw new PushOpenError(
      `push notice did not open with MLS (not for this phone, or already read): ${(e as Error).message}`,
      { cause: e },
    );
  }
  const n =
    inbound.kind === 'notice'
      ? inbound.notice
      : inbound.kind === 'stream-record'
        ? inbound.notices[0]
        : undefined;
  if (inbound.kind !== 'notice' && inbound.kind !== 'stream-record')
    throw new PushOpenError(`push carried a hub ${inbound.kind} message, not a notice`);
  if (d.ack)
    await d.ack(msg.seq).catch((e: unknown) => {
      if (!(e instanceof RelayHttpError && e.status === 404)) throw e;
    });
  if (n === undefined)
    // a cover record of the constant-rate mode (docs/app.md): nothing happened
    return {
      source: 'hub',
      trusted: true,
      cover: true,
      title: 'Vigil',
      body: '',
      at: 0,
      seq: msg.seq,
    };
  return {
    source: 'hub',
    trusted: true,
    title: noticeTitle(n),
    body: noticeBody(n),
    at: n.at,
    notice: n,
    seq: msg.seq,
  };
}

/** One entry of the viewer's notice list. */
export interface FeedEntry extends OpenedPush {
  readonly id: number;
}

/** Notices received while the companion runs (memory only; the newest 100). */
export class NoticeFeed {
  readonly #entries: FeedEntry[] = [];
  #next = 1;

  add(n: OpenedPush): FeedEntry {
    // one notice can arrive twice (its push, and the mailbox): keep the first
    const k = n.notice;
    const same =
      k &&
      this.#entries.find(
        (e) => e.notice?.at === k.at && e.notice.kind === k.kind && e.notice.itemId === k.itemId,
      );
    if (same) return same;
    const e = { ...n, id: this.#next++ };
    this.#entries.push(e);
    if (this.#entries.length > 100) this.#entries.shift();
    return e;
  }

  addNotice(n: NoticeMessage): FeedEntry {
    return this.add({
      source: 'hub',
      trusted: true,
      title: noticeTitle(n),
      body: noticeBody(n),
      at: n.at,
      notice: n,
    });
  }

  /** Entries with id > after, and the newest id. */
  since(after: number): { notices: FeedEntry[]; last: number } {
    return { notices: this.#entries.filter((e) => e.id > after), last: this.#next - 1 };
  }
}

// ---- `vigil app push ...` ------------------------------------------------------------

export const PUSH_USAGE = `usage:
  vigil app push key                                   the relay's VAPID public key (applicationServerKey)
  vigil app push register --endpoint URL --p256dh KEY --auth SECRET
  vigil app push list
  vigil app push remove <id>
  vigil app push open FILE                             open a received push message (its plaintext)`;

export interface PushCliDeps {
  readonly client: RelayClient;
  readonly fs: DurableFs;
  readonly deviceId: string;
  /** Opens hub messages with MLS (paired phone only). */
  readonly receive?: (bytes: Uint8Array) => Promise<Inbound>;
  readonly out: (t: string) => void;
}

/** A registration from the CLI flags, checked before it is sent (one-line errors). */
export function registrationOf(opts: ReadonlyMap<string, string>): PushRegistration {
  const endpoint = opts.get('--endpoint');
  const p256dh = opts.get('--p256dh');
  const auth = opts.get('--auth');
  if (endpoint === undefined || p256dh === undefined || auth === undefined)
    throw new UsageError('push register needs --endpoint, --p256dh and --auth');
  const r = PushRegistrationBody.safeParse({ endpoint, keys: { p256dh, auth } });
  if (!r.success) {
    const i = r.error.issues[0];
    throw new UsageError(`push register: ${i?.message ?? 'invalid registration'}`);
  }
  return r.data;
}

export async function pushCommand(
  d: PushCliDeps,
  positional: readonly string[],
  opts: ReadonlyMap<string, string>,
): Promise<number> {
  const sub = positional[1];
  switch (sub) {
    case 'key':
      d.out(`${await d.client.pushVapidKey()}\n`);
      return 0;
    case 'register': {
      const r = await d.client.registerPush(registrationOf(opts));
      d.out(`push endpoint ${r.id} ${r.created ? 'registered' : 'updated'}\n`);
      return 0;
    }
    case 'list':
      for (const e of await d.client.pushEndpoints())
        d.out(`${e.id}  ${e.origin}  since ${new Date(e.createdAt).toISOString()}\n`);
      return 0;
    case 'remove': {
      const id = positional[2];
      if (id === undefined) throw new UsageError('usage: vigil app push remove <id>');
      await d.client.removePush(id);
      d.out(`push endpoint ${id} removed\n`);
      return 0;
    }
    case 'open': {
      const file = positional[2];
      if (file === undefined) throw new UsageError('usage: vigil app push open FILE');
      const plain = await d.fs.readIfExists(file);
      if (plain === undefined) throw new UsageError(`no such file: ${file}`);
      const receive =
        d.receive ??
        (() =>
          Promise.reject(new VigilError('ENOTPAIRED', 'opening notices needs a paired phone')));
      const o = await openPush(plain, {
        receive,
        deviceId: d.deviceId,
        ack: (seq) => d.client.ack(seq),
      });
      if (o.cover === true) d.out('cover push (privacy mode): nothing happened\n');
      else d.out(`${o.trusted ? '' : '[relay-reported] '}${o.title}: ${o.body}\n`);
      return 0;
    }
    case undefined:
    default:
      throw new UsageError(PUSH_USAGE);
  }
}
