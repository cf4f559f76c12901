/**
 * Phone management from the admin phone, shared by `vigil app phones` and the
 * viewer's phones page:
 *
 *  - `list()`: asks the hub which phones are paired (each phone shares its
 *    groups with the hub alone, so only the hub knows them all;
 *    protocol/phone-roster.ts), this phone first;
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
import {
  PHONES_REQUEST_BODY,
  PHONES_REQUEST_TOPIC,
  PHONES_TOPIC,
  decodeRoster,
} from '../protocol/phone-roster.js';
import type { Hotspot } from './pair/invite.js';

export interface PhoneEntry {
  readonly phoneId: string;
  /** This phone (the one the viewer runs as). */
  readonly self: boolean;
  readonly admin: boolean;
  /** When the hub paired it (absent when the hub did not list this phone). */
  readonly pairedAt?: number;
}

export interface InviteText {
  readonly invite: InviteMessage & { readonly hotspot?: Hotspot };
}

export class PhonesError extends VigilError {
  constructor(code: 'ENOT_ADMIN' | 'ETIMEOUT', message: string) {
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

  /** Asks the hub for its roster (protocol/phone-roster.ts); this phone first. */
  async list(): Promise<PhoneEntry[]> {
    const me = this.#d.crypto.phone;
    const body = Buffer.from(PHONES_REQUEST_BODY).toString('base64url');
    const request = await me.send({ t: 'app', topic: PHONES_REQUEST_TOPIC, body });
    const roster = await this.#ask(request, (m) => {
      if (m.kind !== 'app' || m.topic !== PHONES_TOPIC) return undefined;
      const d = decodeRoster(m.body);
      return d.ok ? d.value : undefined;
    });
    const self = roster.phones.find((p) => p.phoneId === me.phoneId);
    const others = roster.phones.filter((p) => p.phoneId !== me.phoneId);
    return [
      {
        phoneId: me.phoneId,
        self: true,
        admin: self?.admin ?? me.admin,
        ...(self ? { pairedAt: self.pairedAt } : {}),
      },
      ...others
        .sort((a, b) => a.pairedAt - b.pairedAt)
        .map((p) => ({ phoneId: p.phoneId, self: false, admin: p.admin, pairedAt: p.pairedAt })),
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
