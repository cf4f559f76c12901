/**
 * Phone side of phone unlock (`vigil app unlock`): find the locked hub's
 * newest valid challenge in relay group `unlock`, let the owner approve, seal
 * the escrowed phone-unlock key to the hub's unlock key (protocol/unlock.ts),
 * post it up, and report what the hub said.
 *
 * Challenges are trusted only when signed with the hub's unlock signing key
 * received in escrow over MLS, so the relay cannot make the phone prompt.
 */
import { isAborted } from '../base/async.js';
import { reasonOf } from '../base/errors.js';
import {
  UNLOCK_GROUP,
  UnlockError,
  sealAnswer,
  unlockMessageType,
  verifyChallenge,
  verifyStatus,
} from '../protocol/unlock.js';
import type { UnlockChallenge, UnlockStatus } from '../protocol/unlock.js';
import type { RelayClient } from '../protocol/relay-client.js';
import type { Logger } from '../base/logger.js';
import type { VaultUnlock } from './recovery.js';

export type PhoneUnlockRelay = Pick<RelayClient, 'list' | 'readAll' | 'ack' | 'postUp'>;

export interface PhoneUnlockDeps {
  readonly client: PhoneUnlockRelay;
  readonly vault: VaultUnlock;
  readonly logger: Logger;
  readonly now?: () => number;
}

export type UnlockOutcome =
  | { readonly kind: 'status'; readonly status: UnlockStatus }
  /** The hub posted a new challenge after our answer: it is still locked. */
  | { readonly kind: 'asked-again'; readonly challenge: UnlockChallenge }
  | { readonly kind: 'no-answer' };

export class PhoneUnlocker {
  readonly #d: PhoneUnlockDeps;
  /** Statuses seen (newest last), by nonce. */
  readonly statuses: UnlockStatus[] = [];
  #latest: { c: UnlockChallenge; seq: number } | undefined;
  /** `enc` of our last answer: statuses about other answers to the same nonce are not ours. */
  #sent: string | undefined;

  constructor(deps: PhoneUnlockDeps) {
    this.#d = deps;
  }

  #now(): number {
    return (this.#d.now ?? Date.now)();
  }

  /**
   * Drain the `unlock` mailbox once (waiting up to `waitMs` for something to
   * arrive): keeps the newest valid challenge, records statuses. Everything
   * else (older, expired, forged, malformed) is logged and acknowledged; the
   * newest challenge stays on the relay until it is answered or superseded, so
   * a later `vigil app unlock` still finds it.
   */
  async poll(waitMs = 0, signal?: AbortSignal): Promise<void> {
    const { client, vault, logger } = this.#d;
    const { items } = await client.list({
      group: UNLOCK_GROUP,
      waitMs,
      ...(signal ? { signal } : {}),
    });
    const done: number[] = [];
    for (const it of items) {
      if (it.group !== UNLOCK_GROUP || !it.complete || it.seq === this.#latest?.seq) continue;
      const bytes = await client.readAll(it.seq);
      try {
        const type = unlockMessageType(bytes);
        if (type === 'unlock-challenge') {
          const c = verifyChallenge(bytes, {
            deviceId: vault.deviceId,
            signPublicKey: vault.signPublicKey,
            now: this.#now(),
          });
          const cur = this.#latest;
          if (cur === undefined || c.issuedAt >= cur.c.issuedAt) {
            if (cur !== undefined) done.push(cur.seq);
            this.#latest = { c, seq: it.seq };
          } else done.push(it.seq);
          continue;
        } else if (type === 'unlock-status') {
          this.statuses.push(
            verifyStatus(bytes, { deviceId: vault.deviceId, signPublicKey: vault.signPublicKey }),
          );
        } else throw new UnlockError('EUNLOCK_FORMAT', 'not an unlock message');
      } catch (e) {
        logger.warn('unlock message ignored', { seq: it.seq, err: reasonOf(e) });
      }
      done.push(it.seq);
    }
    if (this.#latest !== undefined && this.#latest.c.expiresAt <= this.#now()) {
      done.push(this.#latest.seq);
      this.#latest = undefined;
    }
    for (const seq of done) await this.#ack(seq);
  }

  async #ack(seq: number): Promise<void> {
    try {
      await this.#d.client.ack(seq);
    } catch (e) {
      this.#d.logger.warn('could not acknowledge an unlock message', { seq, err: reasonOf(e) });
    }
  }

  /** The newest valid, unexpired challenge seen so far. */
  get challenge(): UnlockChallenge | undefined {
    return this.#latest?.c;
  }

  /** Wait up to `timeoutMs` for a challenge. */
  async waitForChallenge(
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<UnlockChallenge | undefined> {
    const deadline = this.#now() + timeoutMs;
    await this.poll(0, signal);
    for (;;) {
      const c = this.challenge;
      if (c !== undefined) return c;
      const left = deadline - this.#now();
      if (left <= 0 || isAborted(signal)) return undefined;
      await this.poll(Math.min(left, 10_000), signal);
    }
  }

  /** Seal the phone-unlock key for `challenge` and post it to the hub. */
  async answer(challenge: UnlockChallenge): Promise<void> {
    const { vault, client } = this.#d;
    if (challenge.luksUuid !== vault.luksUuid)
      throw new UnlockError(
        'EUNLOCK_DEVICE',
        `the hub asks for volume ${challenge.luksUuid}, but this phone holds the key of ${vault.luksUuid} (was the hub reinstalled?)`,
      );
    const bytes = sealAnswer(challenge, vault.phoneKey, vault.unlockPublicKey);
    this.#sent = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { enc: string }).enc;
    await client.postUp(UNLOCK_GROUP, bytes);
    // Spent: a later poll must see a newer challenge to count as "asked again".
    const held = this.#latest;
    if (held?.c.nonce === challenge.nonce) {
      this.#latest = undefined;
      await this.#ack(held.seq);
    }
  }

  /** After answering `nonce`: wait for the hub's status or a fresh challenge. */
  async outcome(nonce: string, timeoutMs: number, signal?: AbortSignal): Promise<UnlockOutcome> {
    const deadline = this.#now() + timeoutMs;
    for (;;) {
      const s = this.statuses.find((x) => x.nonce === nonce && x.answer === this.#sent);
      if (s !== undefined) return { kind: 'status', status: s };
      const c = this.challenge;
      if (c !== undefined && c.nonce !== nonce) return { kind: 'asked-again', challenge: c };
      const left = deadline - this.#now();
      if (left <= 0 || isAborted(signal)) return { kind: 'no-answer' };
      await this.poll(Math.min(left, 10_000), signal);
    }
  }
}

export interface UnlockCliOptions {
  readonly client: PhoneUnlockRelay;
  readonly vault: VaultUnlock;
  readonly logger: Logger;
  readonly out: (t: string) => void;
  readonly err: (t: string) => void;
  /** Ask the owner (true = approved); `--yes` passes `async () => true`. */
  readonly confirm: (question: string) => Promise<boolean>;
  /** How long to wait for a challenge, then for the hub's answer. */
  readonly waitMs: number;
}

/**
 * `vigil app unlock`: 0 unlocked; 1 refused / wrong key / declined;
 * 3 nothing to do (no challenge: the hub is not waiting) or no answer yet.
 */
export async function unlockCli(o: UnlockCliOptions): Promise<number> {
  const u = new PhoneUnlocker({ client: o.client, vault: o.vault, logger: o.logger });
  const c = await u.waitForChallenge(o.waitMs);
  if (c === undefined) {
    o.out(
      `hub ${o.vault.deviceId} is not asking to be unlocked (no challenge within ${Math.round(o.waitMs / 1000)} s)\n`,
    );
    return 3;
  }
  o.out(`hub ${c.deviceId} is locked since ${new Date(c.issuedAt).toISOString()}: ${c.reason}\n`);
  if (!(await o.confirm('send this phone’s unlock key to the hub? [y/N] '))) {
    o.out('not sent\n');
    return 1;
  }
  await u.answer(c);
  o.out('unlock key sent (sealed to the hub); waiting for the hub…\n');
  const r = await u.outcome(c.nonce, o.waitMs);
  if (r.kind === 'status') {
    if (r.status.state === 'unlocked') {
      o.out('hub unlocked\n');
      return 0;
    }
    o.err(
      r.status.state === 'wrong-key'
        ? `the hub tried the key: it does not open the volume (${r.status.detail})\n`
        : `the hub refused the answer: ${r.status.detail}\n`,
    );
    return 1;
  }
  if (r.kind === 'asked-again') {
    o.err(`the hub is still locked and asks again: ${r.challenge.reason}\n`);
    return 1;
  }
  o.out('no word from the hub yet (it may be offline; the answer waits on the relay)\n');
  return 3;
}
