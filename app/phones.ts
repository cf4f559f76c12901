/**
 * Phone management from the admin phone, shared by `vigil app phones` and the
 * viewer's phones page:
 *
 *  - `list()`: the phones in the config group as this phone's MLS state has
 *    them (the hub adds and removes phones by commits, so membership is
 *    authenticated), this phone first;
 *  - `invite()`: asks the hub for an invite for another phone and waits for
 *    it (the text `vigil app pair --invite` reads, app/pair/invite.ts);
 *  - `remove(id)`: asks the hub to remove a phone and waits for its answer.
 *
 * Requests go up the config group; answers come back through the mailbox.
 * `sync` pulls it (the viewer's running Syncer shares the pass): the answer is
 * looked for among what the phone received after the request was sent.
 */
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import type { InviteMessage } from '../protocol/e2ee-frames.js';
import type { E2eeCrypto } from './e2ee-crypto.js';
import { loadHotspot } from './pair/invite.js';
import type { Hotspot } from './pair/invite.js';

export interface PhoneEntry {
  readonly phoneId: string;
  /** This phone (the one the viewer runs as). */
  readonly self: boolean;
  /** Known for this phone only (the others' roles are the hub's). */
  readonly admin: boolean | null;
}

export interface InviteText {
  readonly invite: InviteMessage & { readonly hotspot?: Hotspot };
}

export class PhonesError extends VigilError {
  constructor(code: 'ENOT_ADMIN' | 'EUNKNOWN_PHONE' | 'ETIMEOUT', message: string) {
    super(code, message);
    this.name = 'PhonesError';
  }
}

export interface PhonesDeps {
  readonly crypto: E2eeCrypto;
  readonly client: {
    postUp(group: string, bytes: Uint8Array): Promise<unknown>;
    list(q: { waitMs?: number; signal?: AbortSignal }): Promise<unknown>;
  };
  /** One pass over the mailbox (Syncer.syncOnce). */
  readonly sync: () => Promise<unknown>;
  /** The phone's state directory (the hotspot it paired through goes into invites). */
  readonly dir: string;
  readonly fs: DurableFs;
  /** How long to wait for the hub's answer (default 15 s). */
  readonly answerMs?: number;
}

export class PhonesAdmin {
  readonly #d: PhonesDeps;

  constructor(d: PhonesDeps) {
    this.#d = d;
  }

  get admin(): boolean {
    return this.#d.crypto.phone.admin;
  }

  list(): PhoneEntry[] {
    const me = this.#d.crypto.phone;
    const ids = me.phones();
    const others = ids.filter((id) => id !== me.phoneId).sort();
    return [
      { phoneId: me.phoneId, self: true, admin: me.admin },
      ...others.map((phoneId) => ({ phoneId, self: false, admin: null })),
    ];
  }

  async invite(): Promise<InviteText> {
    this.#needAdmin('add phones');
    const answer = await this.#ask(await this.#d.crypto.phone.requestInvite(), (m) =>
      m.kind === 'invite' ? m.invite : undefined,
    );
    const hotspot = await loadHotspot(this.#d.fs, this.#d.dir);
    return { invite: { ...answer, ...(hotspot ? { hotspot } : {}) } };
  }

  async remove(phoneId: string): Promise<void> {
    this.#needAdmin('remove phones');
    if (!this.#d.crypto.phone.phones().includes(phoneId))
      throw new PhonesError('EUNKNOWN_PHONE', `no phone ${phoneId} in this hub's groups`);
    await this.#ask(await this.#d.crypto.phone.requestRemove(phoneId), (m) =>
      m.kind === 'removed' && m.phoneId === phoneId ? true : undefined,
    );
  }

  #needAdmin(what: string): void {
    if (!this.admin)
      throw new PhonesError('ENOT_ADMIN', `only the admin phone can ${what}; this phone is not`);
  }

  async #ask<T>(
    request: Uint8Array,
    match: (m: E2eeCrypto['inbound'][number]) => T | undefined,
  ): Promise<T> {
    const { crypto, client } = this.#d;
    const from = crypto.inbound.length;
    await client.postUp('config', request);
    const answerMs = this.#d.answerMs ?? 15_000;
    const deadline = Date.now() + answerMs;
    for (;;) {
      await this.#d.sync();
      for (const m of crypto.inbound.slice(from)) {
        const got = match(m);
        if (got !== undefined) return got;
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      await client.list({ waitMs: Math.min(5000, left) });
    }
    throw new PhonesError(
      'ETIMEOUT',
      `no answer from the hub within ${Math.round(answerMs / 1000)} s; the request waits on the relay`,
    );
  }
}
