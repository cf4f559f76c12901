/**
 * An in-memory stand-in for the relay's mailbox (the lowest port of the
 * unlock channel) for unit tests: hub items go "down" to the phone, phone
 * posts go "up" to the hub. The real relay is used by
 * test/integration/storage-phone-unlock.test.ts.
 */
import type { ItemInfo } from '../../../protocol/relay-api.js';
import type { AppendParams } from '../../../protocol/relay-client.js';
import { RelayUnreachable } from '../../../protocol/relay-client.js';

interface Msg {
  seq: number;
  group: string;
  from: string;
  bytes: Buffer;
  to: 'hub' | 'phone';
}

export class MemoryMailbox {
  #seq = 0;
  readonly msgs: Msg[] = [];
  /** Calls to fail with RelayUnreachable before succeeding again. */
  failures = 0;
  #waiters: (() => void)[] = [];

  #put(m: Omit<Msg, 'seq'>): number {
    this.#seq += 1;
    this.msgs.push({ ...m, seq: this.#seq });
    for (const w of this.#waiters.splice(0)) w();
    return this.#seq;
  }
  #gate(): void {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new RelayUnreachable('relay down (test)');
    }
  }
  #side(who: 'hub' | 'phone', phoneId = 'phone-1') {
    const list = async (
      opts: { waitMs?: number; group?: string; signal?: AbortSignal } = {},
    ): Promise<{ items: ItemInfo[]; cursor: number }> => {
      this.#gate();
      const mine = () =>
        this.msgs.filter(
          (m) => m.to === who && (opts.group === undefined || m.group === opts.group),
        );
      if (mine().length === 0 && (opts.waitMs ?? 0) > 0)
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(opts.waitMs ?? 0, 200));
          this.#waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      const items = mine().map((m) => ({
        seq: m.seq,
        itemId: `i${m.seq}`,
        group: m.group,
        kind: 'message' as const,
        from: m.from,
        size: m.bytes.length,
        complete: true,
        createdAt: 0,
      }));
      return { items, cursor: this.#seq };
    };
    const readAll = async (seq: number): Promise<Buffer> => {
      this.#gate();
      const m = this.msgs.find((x) => x.seq === seq);
      if (!m) throw new Error(`no item ${seq}`);
      return m.bytes;
    };
    const ack = async (seq: number): Promise<void> => {
      const i = this.msgs.findIndex((x) => x.seq === seq);
      if (i >= 0) this.msgs.splice(i, 1);
    };
    const append = async (
      _itemId: string,
      p: AppendParams,
      bytes: Uint8Array,
    ): Promise<{ itemId: string; seq: number; received: number; complete: boolean }> => {
      this.#gate();
      const seq = this.#put({
        group: p.group,
        from: 'device',
        bytes: Buffer.from(bytes),
        to: 'phone',
      });
      return { itemId: _itemId, seq, received: bytes.length, complete: true };
    };
    const postUp = async (group: string, bytes: Uint8Array): Promise<{ seq: number }> => {
      this.#gate();
      return { seq: this.#put({ group, from: phoneId, bytes: Buffer.from(bytes), to: 'hub' }) };
    };
    return { list, readAll, ack, append, postUp };
  }
  get hub() {
    return this.#side('hub');
  }
  phone(phoneId = 'phone-1') {
    return this.#side('phone', phoneId);
  }
}
