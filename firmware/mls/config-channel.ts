/**
 * The hub's end of the config group over the relay.
 *
 * Phones post config-group MLS messages "up" to their hub (heartbeats, admin
 * requests, `app` envelopes such as Wi-Fi credentials, escrow receipts, unlock
 * material). This channel long-polls the relay mailbox for them, hands each to
 * `MlsHub.handleConfig`, posts the sealed replies back "down" to the phone that
 * sent it, dispatches `app` payloads by topic to the areas that registered for
 * them, and only then acknowledges the message on the relay.
 *
 * Ordering and crashes: messages are processed one at a time in relay order.
 * A message is acknowledged after it was handled; if the hub dies in between,
 * the relay offers it again and MLS refuses the replay (its generation was
 * consumed and persisted) — that rejection is logged and the message dropped,
 * so nothing is processed twice. Messages that fail validation or MLS
 * processing are dropped with a warning (they can never succeed); relay
 * outages are retried with capped exponential backoff.
 *
 * Addressing: MLS phone ids (hub side) and relay phone ids (the relay's
 * principals) are different namespaces. The channel learns the mapping from
 * each authenticated inbound message (the relay names the sender, MLS proves
 * which phone it was) and keeps it durably; a message for a phone whose relay
 * id is not known yet goes to every phone of the device, and only the one
 * holding the config group can open it.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { isAborted, pause } from '../../base/async.js';
import type { DurableFs } from '../../hw/os/fs.js';
import { VigilError, reasonOf } from '../../base/errors.js';
import type { ConfigMessage, NoticeMessage } from '../../protocol/e2ee-frames.js';
import type { ItemInfo } from '../../protocol/relay-api.js';
import type { RelayClient } from '../../protocol/relay-client.js';
import { RelayHttpError } from '../../protocol/relay-client.js';
import type { Logger } from '../../base/logger.js';
import type { ConfigOutcome } from './hub.js';

export const CONFIG_GROUP = 'config';
/** Relay group of the hub's event notices (the relay pushes these to the phones' endpoints). */
export const NOTIFICATION_GROUP = 'notification';
const TOPIC_RE = /^[a-z][a-z0-9-]{0,31}$/;
/** AppMessage.body's cap in protocol/e2ee-frames.ts (bytes before base64). */
export const MAX_APP_BODY = 128 * 1024;

export interface AppInbound {
  readonly phoneId: string;
  readonly topic: string;
  readonly body: Uint8Array;
}

export type AppHandler = (m: AppInbound) => Promise<void> | void;

export interface ConfigChannel {
  /** Handler for one app topic. Returns a function that removes it. */
  onApp(topic: string, handler: AppHandler): () => void;
  /**
   * Seal `body` as an `app` message to one phone (or every paired phone) and
   * post it down through the relay. Resolves once the relay accepted it;
   * retries while the relay is unreachable; rejects when the channel stops.
   */
  sendApp(topic: string, body: Uint8Array, phoneId?: string): Promise<void>;
}

export class ConfigChannelError extends VigilError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ConfigChannelError';
  }
}

/** Event notices (motion) to every phone, sealed in its notification group. */
export interface NoticeChannel {
  /** Resolves once the relay took the notice for every phone; retries while it is unreachable. */
  sendNotice(notice: Omit<NoticeMessage, 't'>): Promise<void>;
}

/** What the channel needs of the MLS hub. */
export interface ConfigHub {
  handleConfig(bytes: Uint8Array): Promise<ConfigOutcome>;
  sealFor(
    phoneId: string,
    msg: ConfigMessage,
    group?: typeof CONFIG_GROUP | typeof NOTIFICATION_GROUP,
  ): Promise<Uint8Array>;
  readonly phones: readonly { readonly phoneId: string }[];
}

export type ConfigRelay = Pick<RelayClient, 'list' | 'readAll' | 'ack' | 'append' | 'removePhone'>;

export interface RelayConfigChannelOptions {
  readonly hub: ConfigHub;
  /** A relay client holding the device's token. */
  readonly client: ConfigRelay;
  readonly logger: Logger;
  /** Where the phone-id mapping is kept (inside the data volume). */
  readonly stateDir?: string;
  readonly fs?: DurableFs;
  /** Items every phone holds durably (from heartbeats): local copies may go. */
  readonly onAcknowledged?: (itemIds: readonly string[]) => Promise<void> | void;
  /** Long-poll wait per relay request. */
  readonly pollWaitMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

/** Relay accounts of removed phones still to delete at the relay (survives a crash). */
const RemovalsFile = z.strictObject({
  v: z.literal(1),
  pending: z.array(z.string().min(1).max(128)),
});

const PeersFile = z.strictObject({
  v: z.literal(1),
  peers: z.record(z.string().regex(/^[0-9a-f]{1,128}$/), z.string().min(1).max(128)),
});

function isTransient(e: unknown): boolean {
  if (e instanceof RelayHttpError) return e.status >= 500 || e.status === 429 || e.status === 408;
  // RelayUnreachable, timeouts, resets.
  return true;
}

export class RelayConfigChannel implements ConfigChannel, NoticeChannel {
  readonly #o: RelayConfigChannelOptions;
  readonly #log: Logger;
  readonly #handlers = new Map<string, Set<AppHandler>>();
  /** MLS phone id -> relay phone id. */
  readonly #peers = new Map<string, string>();
  #peersLoaded = false;
  /** Relay phone ids whose accounts must go (their MLS phone was removed). */
  #removals: string[] = [];
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #handled = 0;
  #dropped = 0;
  #lastError: string | undefined;

  constructor(o: RelayConfigChannelOptions) {
    this.#o = o;
    this.#log = o.logger.child('config-channel');
  }

  onApp(topic: string, handler: AppHandler): () => void {
    if (!TOPIC_RE.test(topic))
      throw new ConfigChannelError('EBADTOPIC', `app topic "${topic}" is not [a-z][a-z0-9-]{0,31}`);
    let set = this.#handlers.get(topic);
    if (!set) this.#handlers.set(topic, (set = new Set()));
    set.add(handler);
    return () => {
      set.delete(handler);
    };
  }

  /** Start the receive loop (idempotent). */
  start(): void {
    if (this.#loop) return;
    if (this.#abort.signal.aborted) this.#abort = new AbortController();
    this.#loop = this.#run(this.#abort.signal);
  }

  /** Stop the loop and every pending send; waits for the message in hand. */
  async stop(): Promise<void> {
    this.#abort.abort();
    const loop = this.#loop;
    this.#loop = undefined;
    await loop;
  }

  status(): { handled: number; dropped: number; running: boolean; lastError?: string } {
    return {
      handled: this.#handled,
      dropped: this.#dropped,
      running: this.#loop !== undefined,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
    };
  }

  async sendApp(topic: string, body: Uint8Array, phoneId?: string): Promise<void> {
    if (!TOPIC_RE.test(topic))
      throw new ConfigChannelError('EBADTOPIC', `app topic "${topic}" is not [a-z][a-z0-9-]{0,31}`);
    if (body.length > MAX_APP_BODY)
      throw new ConfigChannelError(
        'ETOOBIG',
        `app message on "${topic}" is ${body.length} bytes; the limit is ${MAX_APP_BODY} (chunk it)`,
      );
    await this.#loadPeers();
    const targets = phoneId !== undefined ? [phoneId] : this.#o.hub.phones.map((p) => p.phoneId);
    if (targets.length === 0)
      throw new ConfigChannelError('ENOPHONE', 'no paired phone to send to');
    const msg: ConfigMessage = {
      t: 'app',
      topic,
      body: Buffer.from(body).toString('base64url'),
    };
    for (const id of targets) {
      const sealed = await this.#o.hub.sealFor(id, msg);
      await this.#postDown(sealed, this.#peers.get(id), this.#abort.signal);
    }
  }

  /** The relay account id of an MLS phone, once learnt from its messages. */
  relayPhoneOf(phoneId: string): string | undefined {
    return this.#peers.get(phoneId);
  }

  async sendNotice(notice: Omit<NoticeMessage, 't'>): Promise<void> {
    await this.#loadPeers();
    const msg: ConfigMessage = { t: 'notice', ...notice };
    for (const { phoneId } of this.#o.hub.phones) {
      const sealed = await this.#o.hub.sealFor(phoneId, msg, NOTIFICATION_GROUP);
      await this.#postDown(
        sealed,
        this.#peers.get(phoneId),
        this.#abort.signal,
        NOTIFICATION_GROUP,
      );
    }
  }

  async #run(signal: AbortSignal): Promise<void> {
    const backoff = this.#o.backoff ?? { initialMs: 1000, maxMs: 60_000 };
    let delay = backoff.initialMs;
    await this.#loadPeers().catch((e: unknown) => {
      this.#log.warn('phone mapping unreadable; starting empty', { err: reasonOf(e) });
    });
    while (!signal.aborted) {
      try {
        await this.#flushRemovals();
        const { items } = await this.#o.client.list({
          group: CONFIG_GROUP,
          waitMs: this.#o.pollWaitMs ?? 25_000,
          signal,
        });
        const ready = items
          .filter((it) => it.group === CONFIG_GROUP && it.complete)
          .sort((a, b) => a.seq - b.seq);
        for (const it of ready) {
          if (isAborted(signal)) break;
          await this.#one(it, signal);
        }
        delay = backoff.initialMs;
        this.#lastError = undefined;
      } catch (e) {
        if (isAborted(signal)) break;
        this.#lastError = reasonOf(e);
        this.#log.warn('config channel: relay error; retrying', {
          err: this.#lastError,
          retryInMs: delay,
        });
        await pause(delay, signal);
        delay = Math.min(backoff.maxMs, delay * 2);
      }
    }
  }

  /** One inbound message: handle, reply, dispatch, acknowledge. Relay errors propagate. */
  async #one(it: ItemInfo, signal: AbortSignal): Promise<void> {
    const bytes = await this.#o.client.readAll(it.seq, { signal });
    let outcome: ConfigOutcome;
    try {
      outcome = await this.#o.hub.handleConfig(bytes);
    } catch (e) {
      // Malformed, for an unknown group, or a replay after a crash: it can never succeed.
      this.#dropped++;
      this.#log.warn('config message dropped', { seq: it.seq, err: reasonOf(e) });
      await this.#o.client.ack(it.seq);
      return;
    }
    this.#handled++;
    await this.#learnPeer(outcome.phoneId, it.from);
    for (const reply of outcome.replies) await this.#postDown(reply, it.from, signal);
    if (outcome.desync.length > 0)
      this.#log.warn('phone reports a different epoch', {
        phoneId: outcome.phoneId,
        groups: outcome.desync.map((d) => `${d.group}:${d.phoneEpoch}/${d.hubEpoch}`).join(' '),
      });
    if (outcome.acknowledged.length > 0 && this.#o.onAcknowledged) {
      try {
        await this.#o.onAcknowledged(outcome.acknowledged);
      } catch (e) {
        this.#log.warn('acknowledged-items handler failed', { err: reasonOf(e) });
      }
    }
    const m = outcome.message;
    if (m.t === 'remove-request' && !this.#o.hub.phones.some((p) => p.phoneId === m.phoneId)) {
      // the phone is gone from MLS: its relay account goes too, so nothing is addressed to it
      await this.#forgetPeer(m.phoneId);
      await this.#flushRemovals().catch((e: unknown) => {
        this.#log.warn('relay account of a removed phone not deleted yet; retrying', {
          err: reasonOf(e),
        });
      });
    }
    if (m.t === 'app') {
      const handlers = [...(this.#handlers.get(m.topic) ?? [])];
      if (handlers.length === 0)
        this.#log.info('app message with no handler', { topic: m.topic, phoneId: outcome.phoneId });
      const body = Buffer.from(m.body, 'base64url');
      for (const h of handlers) {
        try {
          await h({ phoneId: outcome.phoneId, topic: m.topic, body });
        } catch (e) {
          this.#log.warn('app message handler failed', { topic: m.topic, err: reasonOf(e) });
        }
      }
    }
    await this.#o.client.ack(it.seq);
  }

  async #postDown(
    sealed: Uint8Array,
    relayPhoneId: string | undefined,
    signal: AbortSignal,
    group: string = CONFIG_GROUP,
  ) {
    const backoff = this.#o.backoff ?? { initialMs: 1000, maxMs: 60_000 };
    let delay = backoff.initialMs;
    const itemId = `${group === CONFIG_GROUP ? 'cfg' : 'ntf'}-${randomBytes(12).toString('base64url')}`;
    for (;;) {
      if (signal.aborted)
        throw new ConfigChannelError(
          'ESTOPPED',
          'config channel stopped before the relay took the message',
        );
      try {
        await this.#o.client.append(
          itemId,
          {
            group,
            kind: 'message',
            offset: 0,
            final: true,
            ...(relayPhoneId !== undefined ? { to: [relayPhoneId] } : {}),
          },
          sealed,
          signal,
        );
        return;
      } catch (e) {
        if (isAborted(signal) || !isTransient(e)) throw e;
        this.#log.warn('config reply not delivered yet; retrying', {
          err: reasonOf(e),
          retryInMs: delay,
        });
        await pause(delay, signal);
        delay = Math.min(backoff.maxMs, delay * 2);
      }
    }
  }

  #peersPath(): string | undefined {
    return this.#o.stateDir !== undefined ? join(this.#o.stateDir, 'config-peers.json') : undefined;
  }

  async #loadPeers(): Promise<void> {
    if (this.#peersLoaded) return;
    this.#peersLoaded = true;
    const path = this.#peersPath();
    if (path === undefined || this.#o.fs === undefined) return;
    const pendingPath = this.#removalsPath();
    const pendingRaw =
      pendingPath !== undefined ? await this.#o.fs.readIfExists(pendingPath) : undefined;
    if (pendingRaw) {
      const r = RemovalsFile.safeParse(JSON.parse(pendingRaw.toString('utf8')));
      if (r.success) this.#removals = [...r.data.pending];
      else this.#log.warn('pending relay removals file invalid; ignored', { path: pendingPath });
    }
    const raw = await this.#o.fs.readIfExists(path);
    if (!raw) return;
    const parsed = PeersFile.safeParse(JSON.parse(raw.toString('utf8')));
    if (!parsed.success) {
      this.#log.warn('phone mapping file invalid; ignored', { path });
      return;
    }
    for (const [k, v] of Object.entries(parsed.data.peers)) this.#peers.set(k, v);
  }

  #removalsPath(): string | undefined {
    return this.#o.stateDir !== undefined
      ? join(this.#o.stateDir, 'relay-removals.json')
      : undefined;
  }

  async #saveRemovals(): Promise<void> {
    const path = this.#removalsPath();
    if (path === undefined || this.#o.fs === undefined) return;
    await this.#o.fs.ensureDir(this.#o.stateDir as string);
    await this.#o.fs.writeFileAtomic(
      path,
      JSON.stringify({ v: 1, pending: this.#removals }) + '\n',
      'relay-removals',
    );
  }

  /** Durably queue the removed phone's relay account for deletion, then forget the mapping. */
  async #forgetPeer(phoneId: string): Promise<void> {
    const relayId = this.#peers.get(phoneId);
    if (relayId === undefined) {
      this.#log.warn('removed phone never wrote over the relay: its relay account is unknown', {
        phoneId,
      });
      return;
    }
    if (!this.#removals.includes(relayId)) this.#removals.push(relayId);
    await this.#saveRemovals();
    this.#peers.delete(phoneId);
    const path = this.#peersPath();
    if (path !== undefined && this.#o.fs !== undefined)
      await this.#o.fs.writeFileAtomic(
        path,
        JSON.stringify({ v: 1, peers: Object.fromEntries(this.#peers) }) + '\n',
        'config-peers',
      );
  }

  /** Delete queued relay accounts (404: already gone). Relay errors propagate. */
  async #flushRemovals(): Promise<void> {
    while (this.#removals.length > 0) {
      const relayId = this.#removals[0] as string;
      try {
        await this.#o.client.removePhone(relayId);
        this.#log.info('relay account of a removed phone deleted', { relayPhoneId: relayId });
      } catch (e) {
        if (!(e instanceof RelayHttpError && e.status === 404)) throw e;
      }
      this.#removals.shift();
      await this.#saveRemovals();
    }
  }

  async #learnPeer(phoneId: string, relayId: string): Promise<void> {
    if (this.#peers.get(phoneId) === relayId) return;
    this.#peers.set(phoneId, relayId);
    const path = this.#peersPath();
    if (path === undefined || this.#o.fs === undefined) return;
    await this.#o.fs.ensureDir(this.#o.stateDir as string);
    await this.#o.fs.writeFileAtomic(
      path,
      JSON.stringify({ v: 1, peers: Object.fromEntries(this.#peers) }) + '\n',
      'config-peers',
    );
  }
}
