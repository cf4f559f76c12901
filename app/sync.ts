/**
 * Pulls what the relay holds for this phone into the local store:
 *
 *  1. headers are accepted strictly in relay order, as soon as they arrive (an
 *     item still uploading has its header accepted at once, so its epoch is
 *     processed before any later item's);
 *  2. complete items are fetched, checked by decrypting them, stored (still
 *     encrypted) durably, acknowledged to the E2EE layer, and only then
 *     acknowledged to the relay, which deletes them once every phone did;
 *  3. hub messages (kind "message": config, notifications) go to the E2EE layer.
 */
import { containerError, parseHeader } from '../protocol/container.js';
import { isAborted, pause } from '../base/async.js';
import { reasonOf } from '../base/errors.js';
import type { Logger } from '../base/logger.js';
import type { ItemInfo } from '../protocol/relay-api.js';
import type { RelayClient } from '../protocol/relay-client.js';
import type { CompanionCrypto } from './crypto.js';
import { summaryOf, verifyItem } from './crypto.js';
import type { ItemStore, StoredItem } from './store.js';
import type { RelayContact } from './relay-contact.js';
import type { Fragment } from '../protocol/stream-record.js';
import { GROUP_FOR_ITEM } from '../protocol/mls-profile.js';
import { STREAM_SEQ_BASE, type StreamReassembler } from './stream.js';

export interface SyncDeps {
  readonly client: RelayClient;
  readonly crypto: CompanionCrypto;
  readonly store: ItemStore;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Retry delays after a failed pass (default 500 ms doubling to 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Told of every answer from the relay and every failure to reach it (the viewer's status). */
  readonly contact?: RelayContact;
}

export interface SyncResult {
  readonly stored: StoredItem[];
  readonly messages: string[];
  /** Items seen but not complete yet. */
  readonly pending: number;
}

export class Syncer {
  readonly #d: SyncDeps;
  readonly #accepted = new Set<number>();
  #running: Promise<SyncResult> | undefined;
  /** A heartbeat went out for an epoch gap and the hub has not answered anything since. */
  #heartbeatOutstanding = false;

  constructor(deps: SyncDeps) {
    this.#d = deps;
  }

  /** One pass over the mailbox (concurrent callers share the pass). */
  syncOnce(): Promise<SyncResult> {
    this.#running ??= this.#pass().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #pass(): Promise<SyncResult> {
    const { client, crypto, store, logger } = this.#d;
    const now = this.#d.now ?? Date.now;
    const { items } = await client.list({});
    const stored: StoredItem[] = [];
    const messages: string[] = [];
    let pending = 0;
    /** An item reported EEPOCH_GAP: later items wait for catch-up; hub messages go on. */
    let gap = false;
    for (const it of items) {
      // Phone unlock (relay group "unlock", outside MLS) belongs to `vigil app unlock`.
      if (it.group === 'unlock') continue;
      if (it.kind === 'message') {
        if (!it.complete) {
          pending++;
          continue;
        }
        const bytes = await client.readAll(it.seq);
        this.#heartbeatOutstanding = false;
        let fragments: readonly Fragment[] = [];
        try {
          const r = crypto.receiveMessage
            ? await crypto.receiveMessage(bytes)
            : { text: await crypto.receive(bytes) };
          messages.push(r.text);
          fragments = r.fragments ?? [];
        } catch (e) {
          logger.warn('hub message rejected', { seq: it.seq, group: it.group, err: e });
        }
        // a stream record's fragments are durable before the record is acknowledged
        if (fragments.length > 0) {
          this.#lastRecordSeq = it.seq;
          const stream = await this.#stream();
          for (const f of fragments) if (!this.#streamLost.has(f.id)) await stream.add(f);
          if (!gap) gap = await this.#reassembled(it.seq, stored);
        }
        await client.ack(it.seq);
        continue;
      }
      if (await store.has(it.seq)) {
        await client.ack(it.seq); // stored before a crash, not yet acknowledged
        continue;
      }
      if (gap) {
        pending += 1;
        continue;
      }
      if (!this.#accepted.has(it.seq)) {
        let ok: boolean;
        try {
          ok = await this.#acceptHeader(it);
        } catch (e) {
          if ((e as { code?: unknown }).code !== 'EEPOCH_GAP') throw e;
          // commits are missing (the hub dropped items, or the relay lost them): the
          // heartbeat-ack's catch-up brings them; this item and the later ones wait
          logger.warn('epoch gap: asking the hub to catch up', { seq: it.seq, err: e });
          gap = true;
          pending += 1;
          continue;
        }
        if (!ok) {
          // Its header has not fully arrived: later items must wait (epoch order).
          pending += 1;
          break;
        }
      }
      if (!it.complete) {
        pending += 1;
        continue;
      }
      const bytes = await client.readAll(it.seq);
      let durationMs: number;
      try {
        durationMs = (await verifyItem(crypto, bytes)).trailer.durationMs;
      } catch (e) {
        // Tampered or truncated: keep nothing, say so, and release it on the relay.
        logger.error('item failed to decrypt; discarded', { seq: it.seq, err: e });
        await client.ack(it.seq);
        continue;
      }
      const ph = parseHeader(bytes);
      if (!ph.ok) continue;
      const meta: StoredItem = {
        seq: it.seq,
        relayItemId: it.itemId,
        group: it.group,
        summary: summaryOf(ph.value.header),
        size: bytes.length,
        durationMs,
        storedAt: now(),
      };
      await store.save(meta, bytes);
      await crypto.acknowledge(meta.summary.itemId);
      await client.ack(it.seq);
      stored.push(meta);
      logger.info('item stored', { seq: it.seq, kind: meta.summary.kind, bytes: bytes.length });
    }
    // items waiting for catch-up (or stored fragments from before a restart) move on
    // without waiting for the next real fragment
    if (!gap && this.#streamOpen !== undefined && this.#lastRecordSeq > 0)
      gap = await this.#reassembled(this.#lastRecordSeq, stored);
    if (gap && !this.#heartbeatOutstanding) {
      await client.postUp('config', await crypto.heartbeat());
      this.#heartbeatOutstanding = true;
    }
    return { stored, messages, pending };
  }

  #streamOpen: Promise<StreamReassembler> | undefined;
  #stream(): Promise<StreamReassembler> {
    this.#streamOpen ??= this.#d.store.openStream();
    return this.#streamOpen;
  }
  /** Stream items whose header this syncer accepted (or found already accepted). */
  readonly #streamAccepted = new Set<string>();
  #streamStored = 0;
  /** Items discarded by `#reassembled` for lost bytes (the newest 256). */
  readonly #streamLost = new Set<string>();
  #lastRecordSeq = 0;

  /**
   * Items reassembled from stream records: accept each header as soon as it is
   * whole (first-seen order = the hub's epoch order), store each complete item.
   * Returns true when an epoch gap stopped it (a heartbeat asks for catch-up).
   */
  async #reassembled(seq: number, stored: StoredItem[]): Promise<boolean> {
    const { crypto, store, logger } = this.#d;
    const now = this.#d.now ?? Date.now;
    const stream = await this.#stream();
    for (const id of stream.pending()) {
      if (stream.broken(id)) {
        // its missing bytes cannot come any more (app/stream.ts): waiting for them would hold
        // every later item back, so it goes, as an item deleted on the relay unread would
        logger.warn('stream item lost bytes before this phone read them; discarded', {
          itemId: id,
        });
        await stream.drop(id);
        this.#streamAccepted.delete(id);
        // its later records are ignored, not started over as a new item (kept for a while)
        this.#streamLost.add(id);
        const oldest = this.#streamLost.values().next().value;
        if (this.#streamLost.size > 256 && oldest !== undefined) this.#streamLost.delete(oldest);
        continue;
      }
      if (!this.#streamAccepted.has(id)) {
        const ph = parseHeader(await stream.prefix(id));
        if (!ph.ok) {
          if (ph.code === 'EITEM_TRUNCATED' && !stream.complete(id)) return false; // later items wait
          logger.error('stream item has a bad header; discarded', { itemId: id, err: ph.reason });
          await stream.drop(id);
          continue;
        }
        try {
          if (!(await crypto.itemKey(ph.value.header))) await crypto.acceptHeader(ph.value.header);
        } catch (e) {
          if ((e as { code?: unknown }).code !== 'EEPOCH_GAP') {
            logger.error('stream item header refused; discarded', { itemId: id, err: e });
            await stream.drop(id);
            continue;
          }
          logger.warn('epoch gap in a stream item: asking the hub to catch up', { itemId: id });
          return true;
        }
        this.#streamAccepted.add(id);
      }
      if (!stream.complete(id)) continue;
      const bytes = await stream.take(id);
      let durationMs: number;
      try {
        durationMs = (await verifyItem(crypto, bytes)).trailer.durationMs;
      } catch (e) {
        logger.error('stream item failed to decrypt; discarded', { itemId: id, err: e });
        await stream.drop(id);
        continue;
      }
      const ph = parseHeader(bytes);
      if (!ph.ok) continue;
      const summary = summaryOf(ph.value.header);
      const meta: StoredItem = {
        seq: STREAM_SEQ_BASE + seq * 64 + (this.#streamStored++ % 64),
        relayItemId: id,
        group: GROUP_FOR_ITEM[summary.kind],
        summary,
        size: bytes.length,
        durationMs,
        storedAt: now(),
      };
      await store.save(meta, bytes);
      await crypto.acknowledge(summary.itemId);
      await stream.drop(id);
      this.#streamAccepted.delete(id);
      stored.push(meta);
      logger.info('item stored (stream)', { itemId: id, kind: summary.kind, bytes: bytes.length });
    }
    return false;
  }

  async #acceptHeader(it: ItemInfo): Promise<boolean> {
    const { client, crypto } = this.#d;
    const first = await client.read(it.seq, { offset: 0 });
    const ph = parseHeader(first.data);
    if (!ph.ok) {
      if (ph.code === 'EITEM_TRUNCATED' && !first.complete) return false;
      throw containerError(ph);
    }
    const known = await crypto.itemKey(ph.value.header);
    if (!known) await crypto.acceptHeader(ph.value.header);
    this.#accepted.add(it.seq);
    return true;
  }

  /**
   * Keep syncing until aborted: long-polls the relay, backs off on errors.
   * Every wait ends when `signal` aborts, so a stopping program is never held
   * by a retry delay (up to 30 s) or a poll.
   */
  async run(signal: AbortSignal, onStored?: (items: StoredItem[]) => void): Promise<void> {
    const initialMs = this.#d.backoff?.initialMs ?? 500;
    const maxMs = this.#d.backoff?.maxMs ?? 30_000;
    let after = 0;
    let delay = initialMs;
    while (!isAborted(signal)) {
      try {
        const r = await this.syncOnce();
        this.#d.contact?.reached();
        if (r.stored.length > 0) onStored?.(r.stored);
        delay = initialMs;
        if (r.pending > 0) {
          // Something is still uploading: poll briefly rather than wait for a new item.
          await pause(250, signal);
          continue;
        }
        const l = await this.#d.client.list({ after, waitMs: 20_000, signal });
        after = l.cursor;
        this.#d.contact?.reached();
      } catch (e) {
        if (isAborted(signal)) return;
        this.#d.contact?.failed(reasonOf(e));
        this.#d.logger.warn('sync failed; retrying', { err: reasonOf(e), delayMs: delay });
        await pause(delay, signal);
        delay = Math.min(maxMs, delay * 2);
      }
    }
  }
}
