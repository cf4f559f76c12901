/**
 * Recovery escrow over the config group: the hub hands each paired phone
 *
 *   topic `unlock-key`: the phone-unlock key + the hub's unlock public keys
 *                       (phone-unlock.ts), so the phone can unlock a locked hub;
 *   topic `recovery`:   a manifest (recovery key, digests) then the LUKS
 *                       header backup, deflated and cut into chunks that fit
 *                       AppMessage.body (128 KiB).
 *
 * `sendApp` resolves once the relay holds the message (the relay keeps it
 * until the phone fetched it); storage then records the phone in
 * `.vigil/recovery/escrowed.json` inside the volume. `runEscrow` repeats
 * until every paired phone got it (a new phone gets its own copy).
 */
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { isAborted, pause } from '../../base/async.js';
import { reasonOf } from '../../base/errors.js';
import {
  RECOVERY_CHUNK_BYTES,
  TOPIC_RECOVERY,
  TOPIC_UNLOCK_KEY,
  b64u,
  encodeRecoveryMessage,
  encodeUnlockKeyEscrow,
  sha256Hex,
} from '../../protocol/unlock.js';
import type { Logger } from '../../base/logger.js';
import type { EscrowPort, RecoveryMaterial, Storage } from './storage.js';

/** The part of the hub's config channel (firmware/mls/config-channel.ts) escrow uses. */
export interface AppSender {
  sendApp(topic: string, body: Uint8Array, phoneId?: string): Promise<void>;
}

export interface EscrowUnlockKeys {
  readonly deviceId: string;
  readonly unlockPublicKey: Uint8Array;
  readonly signPublicKey: Uint8Array;
}

/** Build the config-group messages of one escrow run (unlock-key first, then manifest, then chunks). */
export function escrowMessages(
  material: RecoveryMaterial,
  keys: EscrowUnlockKeys,
  opts: { now?: number; chunkBytes?: number; id?: string } = {},
): { topic: string; body: Uint8Array }[] {
  const out: { topic: string; body: Uint8Array }[] = [
    {
      topic: TOPIC_UNLOCK_KEY,
      body: encodeUnlockKeyEscrow({
        v: 1,
        deviceId: keys.deviceId,
        luksUuid: material.luksUuid,
        phoneKey: b64u(material.phoneKey),
        unlockPublicKey: b64u(keys.unlockPublicKey),
        signPublicKey: b64u(keys.signPublicKey),
      }),
    },
  ];
  const id = opts.id ?? randomBytes(16).toString('hex');
  const compressed = deflateSync(material.headerBackup, { level: 9 });
  const size = opts.chunkBytes ?? RECOVERY_CHUNK_BYTES;
  const chunks = Math.max(1, Math.ceil(compressed.length / size));
  out.push({
    topic: TOPIC_RECOVERY,
    body: encodeRecoveryMessage({
      v: 1,
      t: 'manifest',
      id,
      deviceId: keys.deviceId,
      luksUuid: material.luksUuid,
      recoveryKey: material.recoveryKey,
      headerSize: material.headerBackup.length,
      headerSha256: sha256Hex(material.headerBackup),
      compression: 'deflate',
      compressedSize: compressed.length,
      compressedSha256: sha256Hex(compressed),
      chunks,
      createdAt: opts.now ?? Date.now(),
    }),
  });
  for (let i = 0; i < chunks; i++)
    out.push({
      topic: TOPIC_RECOVERY,
      body: encodeRecoveryMessage(
        { v: 1, t: 'chunk', id, index: i },
        compressed.subarray(i * size, (i + 1) * size),
      ),
    });
  return out;
}

/** EscrowPort over the config channel. */
export class ConfigEscrowPort implements EscrowPort {
  readonly #channel: AppSender;
  readonly #keys: () => Promise<EscrowUnlockKeys>;

  constructor(channel: AppSender, keys: () => Promise<EscrowUnlockKeys>) {
    this.#channel = channel;
    this.#keys = keys;
  }

  async escrow(
    material: RecoveryMaterial,
    signal: AbortSignal,
    phoneIds?: readonly string[],
  ): Promise<void> {
    const msgs = escrowMessages(material, await this.#keys());
    for (const phoneId of phoneIds ?? [undefined]) {
      for (const m of msgs) {
        signal.throwIfAborted();
        await this.#channel.sendApp(m.topic, m.body, phoneId);
      }
    }
  }
}

/**
 * Escrow to every paired phone that has not got it yet; on failure wait and
 * try again until `signal` aborts. Resolves when nothing is left to send.
 */
export async function runEscrow(opts: {
  readonly storage: Pick<Storage, 'escrow'>;
  readonly port: EscrowPort;
  readonly phones: () => readonly string[];
  readonly logger: Logger;
  readonly signal: AbortSignal;
  readonly retryMs?: number;
}): Promise<void> {
  const { signal } = opts;
  while (!signal.aborted) {
    try {
      const phones = opts.phones();
      if (phones.length === 0) return;
      const sent = await opts.storage.escrow(opts.port, signal, { recipients: phones });
      if (sent.length > 0) opts.logger.info('recovery material escrowed', { phones: sent });
      return;
    } catch (e) {
      if (isAborted(signal)) return;
      opts.logger.warn('recovery escrow failed; will retry', { err: reasonOf(e) });
      await pause(opts.retryMs ?? 30_000, signal);
    }
  }
}
