/**
 * Phone unlock while the hub is locked (docs/storage.md, "Phone unlock").
 *
 * The hub's MLS state lives inside the locked volume, so the config group is
 * out of reach until the volume opens. A small channel that works while
 * locked is kept OUTSIDE the volume, on the root filesystem
 * (`/var/lib/vigil/unlock/channel.json`, 0600 in a 0700 directory):
 *
 *   - an X25519 key pair: phones seal their answers to its public half;
 *   - an Ed25519 key pair: challenges and statuses are signed with it, so a
 *     phone prompts its owner only for challenges this hub made;
 *   - the relay URL and the hub's relay credential (the mailbox is reachable
 *     without the volume).
 *
 * Neither opens the volume: the key that does (the phone-unlock key, its own
 * LUKS keyslot) is inside the volume and on the paired phones only. Locked,
 * `RelayPhoneUnlock.requestKey` posts a signed challenge (fresh 256-bit
 * nonce, reason, expiry) to every phone in relay group `unlock`; the owner
 * approves with `vigil app unlock`; the phone answers with
 * HPKE-seal({nonce, key}) to the hub's X25519 key; the hub accepts only an
 * answer to its one outstanding challenge (replays, late answers, answers for
 * another hub or sealed to another key are refused with a specific reason,
 * logged, and reported back to the sending phone as a signed status).
 */
import { randomBytes } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { DurableFs } from '../../hw/os/fs.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import { isAborted, pause } from '../../base/async.js';
import { reasonOf } from '../../base/errors.js';
import {
  CHALLENGE_TTL_MS,
  UNLOCK_GROUP,
  UnlockError,
  b64u,
  generateEd25519,
  generateX25519,
  openAnswer,
  signChallenge,
  signStatus,
  unb64u,
} from '../../protocol/unlock.js';
import type { RawKeyPair, UnlockChallenge, UnlockStatus } from '../../protocol/unlock.js';
import { RelayClient, RelayHttpError } from '../../protocol/relay-client.js';
import type { Logger } from '../../base/logger.js';
import type { PhoneUnlockPort } from './key-sources.js';

/** Host path of the channel file (root filesystem, never inside the volume). */
export const UNLOCK_CHANNEL_FILE = '/var/lib/vigil/unlock/channel.json';

const B32 = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
const ChannelFile = z.strictObject({
  format: z.literal('vigil-unlock-channel'),
  version: z.literal(1),
  deviceId: z.string().min(1),
  luksUuid: z.string().min(1),
  x25519: z.strictObject({ privateKey: B32, publicKey: B32 }),
  ed25519: z.strictObject({ privateKey: B32, publicKey: B32 }),
  relay: z.strictObject({ url: z.url(), deviceId: z.string().min(1), token: z.string().min(1) }),
});
type ChannelFile = z.infer<typeof ChannelFile>;

export interface UnlockChannel {
  readonly deviceId: string;
  readonly luksUuid: string;
  readonly unlockKey: RawKeyPair;
  readonly signKey: RawKeyPair;
  readonly relay: { readonly url: string; readonly deviceId: string; readonly token: string };
}

const kp = (k: { privateKey: string; publicKey: string }): RawKeyPair => ({
  privateKey: unb64u(k.privateKey, 'privateKey', 32),
  publicKey: unb64u(k.publicKey, 'publicKey', 32),
});
const enc = (k: RawKeyPair): { privateKey: string; publicKey: string } => ({
  privateKey: b64u(k.privateKey),
  publicKey: b64u(k.publicKey),
});

/** The channel file: created once the hub is unlocked and has relay credentials. */
export class UnlockChannelStore {
  readonly file: string;
  readonly #fs: DurableFs;

  constructor(opts: { paths: HostPaths; fs: DurableFs; file?: string }) {
    this.file = opts.file ?? opts.paths.host(UNLOCK_CHANNEL_FILE);
    this.#fs = opts.fs;
  }

  async load(): Promise<UnlockChannel | undefined> {
    const raw = await this.#fs.readIfExists(this.file);
    if (raw === undefined) return undefined;
    let f: ChannelFile;
    try {
      f = ChannelFile.parse(JSON.parse(raw.toString('utf8')));
    } catch (e) {
      throw new UnlockError('EUNLOCK_CHANNEL', `${this.file} is not a valid unlock channel file`, {
        cause: e,
      });
    }
    return {
      deviceId: f.deviceId,
      luksUuid: f.luksUuid,
      unlockKey: kp(f.x25519),
      signKey: kp(f.ed25519),
      relay: f.relay,
    };
  }

  /**
   * Keys are made once per volume (a new LUKS UUID gets new keys); the relay
   * credential is refreshed when it changed. Returns the channel now on disk.
   */
  async ensure(want: {
    deviceId: string;
    luksUuid: string;
    relay: { url: string; deviceId: string; token: string };
  }): Promise<{ channel: UnlockChannel; created: boolean }> {
    let cur: UnlockChannel | undefined;
    try {
      cur = await this.load();
    } catch {
      cur = undefined; // unreadable: replaced below (phones get the new public keys by escrow)
    }
    const keep =
      cur !== undefined && cur.deviceId === want.deviceId && cur.luksUuid === want.luksUuid
        ? cur
        : undefined;
    if (
      keep !== undefined &&
      keep.relay.url === want.relay.url &&
      keep.relay.token === want.relay.token &&
      keep.relay.deviceId === want.relay.deviceId
    )
      return { channel: keep, created: false };
    const unlockKey = keep?.unlockKey ?? generateX25519();
    const signKey = keep?.signKey ?? generateEd25519();
    const file: ChannelFile = {
      format: 'vigil-unlock-channel',
      version: 1,
      deviceId: want.deviceId,
      luksUuid: want.luksUuid,
      x25519: enc(unlockKey),
      ed25519: enc(signKey),
      relay: { url: want.relay.url, deviceId: want.relay.deviceId, token: want.relay.token },
    };
    await this.#fs.ensureDir(dirname(this.file));
    await chmod(dirname(this.file), 0o700);
    await this.#fs.writeFileAtomic(this.file, JSON.stringify(file) + '\n', 'unlock-channel');
    await chmod(this.file, 0o600);
    return {
      channel: {
        deviceId: want.deviceId,
        luksUuid: want.luksUuid,
        unlockKey,
        signKey,
        relay: file.relay,
      },
      created: keep === undefined,
    };
  }
}

/** What the port needs of the relay (a RelayClient with the device token). */
export type UnlockRelay = Pick<RelayClient, 'append' | 'list' | 'readAll' | 'ack'>;

export interface RefusedAnswer {
  readonly from: string;
  readonly code: string;
  readonly message: string;
}

export interface RelayPhoneUnlockOptions {
  readonly channel: () => Promise<UnlockChannel | undefined>;
  readonly logger: Logger;
  /** Default: a RelayClient with the channel's URL and token. */
  readonly relay?: (ch: UnlockChannel) => UnlockRelay;
  readonly now?: () => number;
  readonly pollWaitMs?: number;
  readonly ttlMs?: number;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

/** The hub's PhoneUnlockPort over relay group `unlock` (works while the volume is locked). */
export class RelayPhoneUnlock implements PhoneUnlockPort {
  readonly #o: RelayPhoneUnlockOptions;
  readonly #log: Logger;
  #current: UnlockChallenge | undefined;
  /** The answer whose key storage is trying now (its phone hears the outcome). */
  #delivered: { nonce: string; answer: string; from: string } | undefined;
  /** Every refused answer (newest last), for status and tests. */
  readonly refused: RefusedAnswer[] = [];
  /** Challenges posted (newest last). */
  readonly challenges: UnlockChallenge[] = [];

  constructor(opts: RelayPhoneUnlockOptions) {
    this.#o = opts;
    this.#log = opts.logger.child('phone-unlock');
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  async requestKey(reason: string, signal: AbortSignal): Promise<Uint8Array> {
    const ch = await this.#o.channel();
    if (ch === undefined) {
      this.#log.warn('phone unlock is not set up on this hub (no unlock channel yet)', {
        file: UNLOCK_CHANNEL_FILE,
      });
      throw new UnlockError(
        'EUNLOCK_NOT_SET_UP',
        'phone unlock is not set up on this hub yet (it is set up once a paired hub has unlocked)',
      );
    }
    const relay =
      this.#o.relay?.(ch) ?? new RelayClient({ url: ch.relay.url, token: ch.relay.token });
    const backoff = this.#o.backoff ?? { initialMs: 1000, maxMs: 30_000 };
    let delay = backoff.initialMs;

    // Asked again after handing over a key: that key did not open the volume.
    const prev = this.#delivered;
    this.#delivered = undefined;
    if (prev !== undefined)
      await this.#status(relay, ch, prev, 'wrong-key', reason, signal).catch((e: unknown) => {
        this.#log.warn('could not tell the phone its key was wrong', { err: reasonOf(e) });
      });

    while (!isAborted(signal)) {
      try {
        const c = this.#current;
        if (c === undefined || c.expiresAt <= this.#now() || c.reason !== reason)
          await this.#challenge(relay, ch, reason, signal);
        const got = await this.#receive(relay, ch, signal);
        delay = backoff.initialMs;
        if (got !== undefined) return got;
      } catch (e) {
        if (isAborted(signal)) break;
        if (e instanceof RelayHttpError && e.status < 500 && e.status !== 429 && e.status !== 408)
          this.#log.error('the relay refuses the unlock channel', { err: reasonOf(e) });
        else this.#log.warn('unlock channel: relay unreachable; retrying', { err: reasonOf(e) });
        await pause(delay, signal);
        delay = Math.min(backoff.maxMs, delay * 2);
      }
    }
    throw new UnlockError('EUNLOCK_ABORTED', 'phone unlock stopped');
  }

  async #challenge(
    relay: UnlockRelay,
    ch: UnlockChannel,
    reason: string,
    signal: AbortSignal,
  ): Promise<void> {
    const now = this.#now();
    const c = signChallenge(
      {
        v: 1,
        t: 'unlock-challenge',
        deviceId: ch.deviceId,
        luksUuid: ch.luksUuid,
        nonce: b64u(randomBytes(32)),
        reason: reason.slice(0, 300),
        issuedAt: now,
        expiresAt: now + (this.#o.ttlMs ?? CHALLENGE_TTL_MS),
      },
      ch.signKey,
    );
    await relay.append(
      `unlock-${randomBytes(9).toString('base64url')}`,
      { group: UNLOCK_GROUP, kind: 'message', offset: 0, final: true },
      Buffer.from(JSON.stringify(c)),
      signal,
    );
    // Only once the phones can see it does it replace the previous one.
    this.#current = c;
    this.challenges.push(c);
    this.#log.info('locked: asked the paired phones to unlock', {
      reason: c.reason,
      expiresAt: new Date(c.expiresAt).toISOString(),
    });
  }

  /** One long poll of the mailbox; a key when a valid answer arrived. */
  async #receive(
    relay: UnlockRelay,
    ch: UnlockChannel,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    const c = this.#current;
    const waitMs = Math.max(
      0,
      Math.min(this.#o.pollWaitMs ?? 20_000, (c?.expiresAt ?? 0) - this.#now()),
    );
    const { items } = await relay.list({ group: UNLOCK_GROUP, waitMs, signal });
    for (const it of items) {
      if (it.group !== UNLOCK_GROUP || !it.complete) continue;
      const bytes = await relay.readAll(it.seq, { signal });
      await relay.ack(it.seq);
      try {
        const key = openAnswer(bytes, this.#current, ch.unlockKey);
        const nonce = this.#current?.nonce ?? '';
        // Single use: the nonce is spent before the key is tried.
        this.#current = undefined;
        this.#delivered = { nonce, answer: this.#fieldOf(bytes, 'enc') ?? '', from: it.from };
        this.#log.info('unlock key received from a phone', { from: it.from });
        return key;
      } catch (e) {
        const code = e instanceof UnlockError ? e.code : 'EUNLOCK_FORMAT';
        const message = reasonOf(e);
        this.refused.push({ from: it.from, code, message });
        this.#log.warn('unlock answer refused', { from: it.from, code, reason: message });
        const nonce = this.#fieldOf(bytes, 'nonce');
        if (nonce !== undefined)
          await this.#status(
            relay,
            ch,
            { nonce, answer: this.#fieldOf(bytes, 'enc') ?? '', from: it.from },
            'refused',
            message,
            signal,
          ).catch(() => undefined);
      }
    }
    return undefined;
  }

  #fieldOf(bytes: Uint8Array, field: 'nonce' | 'enc'): string | undefined {
    try {
      const n = (JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>)[field];
      return typeof n === 'string' && /^[A-Za-z0-9_-]{43}$/.test(n) ? n : undefined;
    } catch {
      return undefined;
    }
  }

  async #status(
    relay: UnlockRelay,
    ch: UnlockChannel,
    about: { nonce: string; answer: string; from: string },
    state: UnlockStatus['state'],
    detail: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const s = signStatus(
      {
        v: 1,
        t: 'unlock-status',
        deviceId: ch.deviceId,
        nonce: about.nonce,
        answer: about.answer,
        state,
        detail: detail.slice(0, 300),
        at: this.#now(),
      },
      ch.signKey,
    );
    await relay.append(
      `unlock-${randomBytes(9).toString('base64url')}`,
      { group: UNLOCK_GROUP, kind: 'message', offset: 0, final: true, to: [about.from] },
      Buffer.from(JSON.stringify(s)),
      signal,
    );
  }

  /** After the volume opened with a phone's key: tell that phone. */
  async confirmUnlocked(): Promise<void> {
    const d = this.#delivered;
    this.#delivered = undefined;
    if (d === undefined) return;
    const ch = await this.#o.channel();
    if (ch === undefined) return;
    const relay =
      this.#o.relay?.(ch) ?? new RelayClient({ url: ch.relay.url, token: ch.relay.token });
    await this.#status(relay, ch, d, 'unlocked', 'the data volume is open');
  }
}
