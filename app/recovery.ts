/**
 * The companion's escrow vault: what the hub hands the phone for safekeeping
 * over the config group (protocol/unlock.ts), kept under the app directory:
 *
 *   <dir>/recovery/                 0700
 *     unlock.json                   phone-unlock key + the hub's unlock public keys (topic unlock-key)
 *     recovery.json                 recovery key, LUKS UUID, header digest (topic recovery)
 *     luks-header.img               the LUKS header backup (deflated + chunked on the wire)
 *     incoming/<id>.manifest|.<n>   an escrow run still arriving
 *
 * Every file 0600, written through DurableFs. `vigil app recovery show |
 * export-header FILE` gives them back (app/cli.ts).
 */
import { chmod, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { z } from 'zod';
import type { DurableFs } from '../hw/os/fs.js';
import { VigilError } from '../base/errors.js';
import {
  RecoveryManifest,
  TOPIC_RECOVERY,
  TOPIC_UNLOCK_KEY,
  UnlockError,
  decodeRecoveryMessage,
  decodeUnlockKeyEscrow,
  sha256Hex,
  unb64u,
} from '../protocol/unlock.js';
import type { UnlockKeyEscrow } from '../protocol/unlock.js';

export const recoveryDir = (dir: string): string => join(dir, 'recovery');

const RecoveryFile = z.strictObject({
  v: z.literal(1),
  deviceId: z.string(),
  luksUuid: z.string(),
  recoveryKey: z.string(),
  headerSha256: z.string(),
  headerSize: z.number(),
  receivedAt: z.string(),
});
export type RecoveryFile = z.infer<typeof RecoveryFile>;

export interface VaultUnlock {
  readonly deviceId: string;
  readonly luksUuid: string;
  readonly phoneKey: Buffer;
  readonly unlockPublicKey: Buffer;
  readonly signPublicKey: Buffer;
}

export class RecoveryVault {
  readonly dir: string;
  readonly #fs: DurableFs;
  readonly #now: () => Date;

  constructor(appDir: string, fs: DurableFs, now: () => Date = () => new Date()) {
    this.dir = recoveryDir(appDir);
    this.#fs = fs;
    this.#now = now;
  }

  async #write(path: string, data: Uint8Array | string, label: string): Promise<void> {
    await this.#fs.writeFileAtomic(path, data, label);
    await chmod(path, 0o600);
  }

  async #ensure(sub = ''): Promise<string> {
    const d = join(this.dir, sub);
    await this.#fs.ensureDir(d);
    await chmod(this.dir, 0o700);
    if (sub !== '') await chmod(d, 0o700);
    return d;
  }

  /** Topic `unlock-key`. */
  async receiveUnlockKey(body: Uint8Array): Promise<string> {
    const e: UnlockKeyEscrow = decodeUnlockKeyEscrow(body);
    await this.#ensure();
    await this.#write(join(this.dir, 'unlock.json'), JSON.stringify(e) + '\n', 'app-unlock-key');
    return `phone-unlock key for hub ${e.deviceId} stored (vigil app unlock uses it)`;
  }

  /** Topic `recovery`: a manifest or one chunk; assembles the header once all chunks are in. */
  async receiveRecovery(body: Uint8Array): Promise<string> {
    const m = decodeRecoveryMessage(body);
    const inc = await this.#ensure('incoming');
    if (m.t === 'manifest') {
      await this.#write(
        join(inc, `${m.manifest.id}.manifest`),
        JSON.stringify(m.manifest),
        'app-recovery-manifest',
      );
      return (
        (await this.#assemble(m.manifest.id)) ??
        `recovery escrow from hub ${m.manifest.deviceId} arriving (${m.manifest.chunks} part(s))`
      );
    }
    await this.#write(join(inc, `${m.head.id}.${m.head.index}`), m.data, 'app-recovery-chunk');
    return (await this.#assemble(m.head.id)) ?? `recovery escrow part ${m.head.index + 1} received`;
  }

  async #assemble(id: string): Promise<string | undefined> {
    const inc = join(this.dir, 'incoming');
    const raw = await this.#fs.readIfExists(join(inc, `${id}.manifest`));
    if (raw === undefined) return undefined;
    const man = RecoveryManifest.parse(JSON.parse(raw.toString('utf8')));
    const parts: Buffer[] = [];
    for (let i = 0; i < man.chunks; i++) {
      const p = await this.#fs.readIfExists(join(inc, `${id}.${i}`));
      if (p === undefined) return undefined;
      parts.push(p);
    }
    const compressed = Buffer.concat(parts);
    const drop = async (all = false): Promise<void> => {
      for (const n of await readdir(inc))
        if (all || n.startsWith(`${id}.`)) await rm(join(inc, n), { force: true });
    };
    if (
      compressed.length !== man.compressedSize ||
      sha256Hex(compressed) !== man.compressedSha256
    ) {
      await drop();
      throw new UnlockError(
        'EESCROW_DIGEST',
        `recovery escrow ${id}: the parts do not match the manifest's digest (discarded; the hub sends it again)`,
      );
    }
    const header = inflateSync(compressed, { maxOutputLength: 64 * 1024 * 1024 });
    if (header.length !== man.headerSize || sha256Hex(header) !== man.headerSha256) {
      await drop();
      throw new UnlockError(
        'EESCROW_DIGEST',
        `recovery escrow ${id}: header digest mismatch (discarded)`,
      );
    }
    // Header first, then the record naming it: a crash leaves either the old pair or the new header.
    await this.#write(join(this.dir, 'luks-header.img'), header, 'app-luks-header');
    const rec: RecoveryFile = {
      v: 1,
      deviceId: man.deviceId,
      luksUuid: man.luksUuid,
      recoveryKey: man.recoveryKey,
      headerSha256: man.headerSha256,
      headerSize: man.headerSize,
      receivedAt: this.#now().toISOString(),
    };
    await this.#write(join(this.dir, 'recovery.json'), JSON.stringify(rec) + '\n', 'app-recovery');
    await drop(true); // this run and any older, unfinished one
    return `recovery key and LUKS header backup of hub ${man.deviceId} stored (vigil app recovery show)`;
  }

  async recovery(): Promise<RecoveryFile | undefined> {
    const raw = await this.#fs.readIfExists(join(this.dir, 'recovery.json'));
    return raw === undefined ? undefined : RecoveryFile.parse(JSON.parse(raw.toString('utf8')));
  }

  async unlock(): Promise<VaultUnlock | undefined> {
    const raw = await this.#fs.readIfExists(join(this.dir, 'unlock.json'));
    if (raw === undefined) return undefined;
    const e = decodeUnlockKeyEscrow(raw);
    return {
      deviceId: e.deviceId,
      luksUuid: e.luksUuid,
      phoneKey: unb64u(e.phoneKey, 'phoneKey', 32),
      unlockPublicKey: unb64u(e.unlockPublicKey, 'unlockPublicKey', 32),
      signPublicKey: unb64u(e.signPublicKey, 'signPublicKey', 32),
    };
  }

  /** Copy the header backup to `file` (0600), checked against the recorded digest. */
  async exportHeader(file: string): Promise<RecoveryFile> {
    const rec = await this.recovery();
    const img = await this.#fs.readIfExists(join(this.dir, 'luks-header.img'));
    if (rec === undefined || img === undefined)
      throw new VigilError(
        'ENOESCROW',
        `no header backup in ${this.dir}: the hub has not escrowed it to this phone yet (run vigil app list to receive it)`,
      );
    if (sha256Hex(img) !== rec.headerSha256)
      throw new VigilError(
        'EESCROW_DIGEST',
        `${join(this.dir, 'luks-header.img')} is damaged (digest mismatch)`,
      );
    await this.#write(file, img, 'app-header-export');
    return rec;
  }
}

/** Entries for app/topics.ts APP_TOPICS. */
export const RECOVERY_TOPICS = [
  {
    topic: TOPIC_UNLOCK_KEY,
    handle: (ctx: { dir: string; fs: DurableFs }, body: Uint8Array): Promise<string> =>
      new RecoveryVault(ctx.dir, ctx.fs).receiveUnlockKey(body),
  },
  {
    topic: TOPIC_RECOVERY,
    handle: (ctx: { dir: string; fs: DurableFs }, body: Uint8Array): Promise<string> =>
      new RecoveryVault(ctx.dir, ctx.fs).receiveRecovery(body),
  },
] as const;

/** `vigil app recovery show` lines (the recovery key is printed: the owner asked for it). */
export async function recoveryShow(vault: RecoveryVault, json: boolean): Promise<string> {
  const rec = await vault.recovery();
  const un = await vault.unlock();
  if (rec === undefined && un === undefined)
    throw new VigilError(
      'ENOESCROW',
      `nothing escrowed in ${vault.dir} yet (the hub sends it after pairing; run vigil app list to receive it)`,
    );
  if (json)
    return (
      JSON.stringify({
        deviceId: rec?.deviceId ?? un?.deviceId,
        luksUuid: rec?.luksUuid ?? un?.luksUuid,
        recoveryKey: rec?.recoveryKey ?? null,
        headerBackup: rec ? { sha256: rec.headerSha256, bytes: rec.headerSize } : null,
        phoneUnlock: un !== undefined,
        receivedAt: rec?.receivedAt ?? null,
      }) + '\n'
    );
  const lines = [
    `hub:           ${rec?.deviceId ?? un?.deviceId ?? '?'}`,
    `LUKS volume:   ${rec?.luksUuid ?? un?.luksUuid ?? '?'}`,
    `recovery key:  ${rec?.recoveryKey ?? '(not received yet)'}`,
    `header backup: ${rec ? `${rec.headerSize} bytes, sha256 ${rec.headerSha256}` : '(not received yet)'}`,
    `phone unlock:  ${un ? 'ready (vigil app unlock)' : '(not received yet)'}`,
  ];
  return lines.join('\n') + '\n';
}
