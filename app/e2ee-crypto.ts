/**
 * `CompanionCrypto` over the E2EE layer's phone (app/e2ee/phone.ts): MLS
 * epochs, item keys kept durably by the phone, heartbeats and config messages.
 */
import { createHash } from 'node:crypto';
import type { ParsedHeader } from '../protocol/container.js';
import type { NoticeMessage } from '../protocol/e2ee-frames.js';
import type { E2eePhone, Inbound } from './e2ee/phone.js';
import type { CompanionCrypto, ItemSummary, ReceivedMessage } from './crypto.js';
import { summaryOf } from './crypto.js';

function describe(m: Inbound): string {
  switch (m.kind) {
    case 'heartbeat-ack': {
      const line = `heartbeat acknowledged (caught up ${m.caughtUp} epoch(s), ${m.confirmedAcks.length} item(s) confirmed)`;
      const d = m.ack.dropped;
      return d === undefined ? line : `${line}; ${droppedLine(d.items)}`;
    }
    case 'invite':
      return 'invite for a new phone received';
    case 'removed':
      return `phone ${m.phoneId} removed`;
    case 'notice':
      return describeNotice(m.notice);
    case 'app':
      return `message on topic ${m.topic}`;
    case 'stream-record':
      return m.fragments.length + m.notices.length === 0
        ? 'cover record'
        : `stream record (${m.fragments.length} fragment(s), ${m.notices.length} notice(s))`;
  }
}

function digest(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('base64url');
}

/** One line for a sealed hub notice (authenticated by MLS). */
export function describeNotice(n: NoticeMessage): string {
  const item = n.itemId !== undefined ? ` (item ${n.itemId})` : '';
  return `${n.kind} at ${new Date(n.at).toISOString()}: ${n.text}${item}`;
}

/** What the owner reads when the hub had to drop unsent items (heartbeat-ack `dropped`). */
export function droppedLine(items: number): string {
  return `the hub dropped ${items} item${items === 1 ? '' : 's'} during a relay outage`;
}

/**
 * Handles one `app` topic from the hub (escrow, OTA reports, ...). Returns the
 * line the CLI prints; the payload itself is the handler's to keep.
 */
export type PhoneAppHandler = (body: Uint8Array) => Promise<string>;

export class E2eeCrypto implements CompanionCrypto {
  readonly phone: E2eePhone;
  /** Everything the hub sent, in order (the CLI prints these). */
  readonly inbound: Inbound[] = [];
  readonly #appHandlers = new Map<string, PhoneAppHandler>();
  readonly #noticeListeners = new Set<(n: NoticeMessage) => void>();
  readonly #inboundListeners = new Set<(m: Inbound) => void>();
  /** The newest 64 notice-carrying hub messages opened, by digest of their ciphertext. */
  readonly #notices = new Map<string, Inbound>();

  constructor(phone: E2eePhone) {
    this.phone = phone;
  }

  async acceptHeader(header: ParsedHeader): Promise<ItemSummary> {
    await this.phone.acceptHeader(header);
    return summaryOf(header);
  }

  itemKey(header: ParsedHeader): Promise<Buffer | undefined> {
    return this.phone.itemKey(Buffer.from(header.core.itemId).toString('hex'));
  }

  acknowledge(itemId: string): Promise<void> {
    return this.phone.acknowledge(itemId);
  }

  heartbeat(): Promise<Uint8Array> {
    return this.phone.heartbeat();
  }

  forget(itemId: string): Promise<void> {
    return this.phone.forgetItem(itemId);
  }

  /** Route `app` messages on `topic` to `handler` (one handler per topic). */
  onApp(topic: string, handler: PhoneAppHandler): void {
    this.#appHandlers.set(topic, handler);
  }

  /** Called with every sealed notice the hub sends (mailbox or push). Returns the unsubscribe. */
  onNotice(fn: (n: NoticeMessage) => void): () => void {
    this.#noticeListeners.add(fn);
    return () => this.#noticeListeners.delete(fn);
  }

  /** Called with every hub message this companion opens. Returns the unsubscribe. */
  onInbound(fn: (m: Inbound) => void): () => void {
    this.#inboundListeners.add(fn);
    return () => this.#inboundListeners.delete(fn);
  }

  /** Open one hub message with MLS and return what it was (receive() prints it). */
  async receiveInbound(bytes: Uint8Array): Promise<Inbound> {
    const m = await this.phone.receive(bytes);
    this.inbound.push(m);
    for (const fn of this.#inboundListeners) fn(m);
    if (m.kind === 'notice' || m.kind === 'stream-record') {
      this.#notices.set(digest(bytes), m);
      const oldest = this.#notices.keys().next().value;
      if (this.#notices.size > 64 && oldest !== undefined) this.#notices.delete(oldest);
    }
    if (m.kind === 'notice') for (const fn of this.#noticeListeners) fn(m.notice);
    if (m.kind === 'stream-record')
      for (const n of m.notices) for (const fn of this.#noticeListeners) fn(n);
    return m;
  }

  /**
   * Open a push message's MLS ciphertext (app/push.ts `openPush`). The relay pushes the very
   * bytes it keeps in the mailbox, and MLS opens a message only once: when this companion has
   * already read the notice from its mailbox (the usual order while it runs), the push gets
   * what that message said then instead of a refusal. Any other message is opened here.
   */
  openPushed(bytes: Uint8Array): Promise<Inbound> {
    const seen = this.#notices.get(digest(bytes));
    return seen ? Promise.resolve(seen) : this.receiveInbound(bytes);
  }

  async receiveMessage(bytes: Uint8Array): Promise<ReceivedMessage> {
    const m = await this.receiveInbound(bytes);
    if (m.kind === 'stream-record') return { text: describe(m), fragments: m.fragments };
    if (m.kind === 'app') {
      const h = this.#appHandlers.get(m.topic);
      if (h) return { text: await h(m.body) };
    }
    return { text: describe(m) };
  }

  async receive(bytes: Uint8Array): Promise<string> {
    const m = await this.receiveInbound(bytes);
    if (m.kind === 'app') {
      const h = this.#appHandlers.get(m.topic);
      if (h) return h(m.body);
    }
    return describe(m);
  }
}
