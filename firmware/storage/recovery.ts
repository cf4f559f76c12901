/**
 * Recovery material of the data volume: read it from the mounted volume,
 * escrow it to the phones once each, and restore a LUKS header from a backup.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { LuksError } from '../../hw/luks/luks.js';
import { readRecord } from './context.js';
import type { StorageContext } from './context.js';
import { RECOVERY_DIR, VOLUME_MARKER } from './plan.js';

/** Recovery material, handed to the paired phone for safekeeping. */
export interface RecoveryMaterial {
  readonly luksUuid: string;
  readonly recoveryKey: string;
  /** The phone-unlock key: the phone sends it back to unlock a hub whose OTP key fails. */
  readonly phoneKey: Uint8Array;
  /** luksHeaderBackup image (restore with `vigil storage recovery restore-header`). */
  readonly headerBackup: Uint8Array;
}

export interface EscrowPort {
  /**
   * Resolves once the material is safely on its way to the phones (held by the
   * relay until they fetch it): to `phoneIds`, or to every paired phone.
   */
  escrow(
    material: RecoveryMaterial,
    signal: AbortSignal,
    phoneIds?: readonly string[],
  ): Promise<void>;
}

const EscrowedMarker = z.object({
  escrowedAt: z.string(),
  /** Phones (MLS phone ids) that got the material; absent = one broadcast to every phone. */
  phones: z.array(z.string()).optional(),
});

const MarkerSchema = z.object({
  format: z.literal('vigil-volume'),
  version: z.literal(1),
  luksUuid: z.string(),
  createdAt: z.string(),
});

/** The recovery material stored in the (mounted) volume, for escrow to the phone. */
export async function recoveryMaterial(
  ctx: Pick<StorageContext, 'mountPoint'>,
): Promise<RecoveryMaterial> {
  const rdir = join(ctx.mountPoint, RECOVERY_DIR);
  const marker = MarkerSchema.parse(
    JSON.parse(await readFile(join(ctx.mountPoint, VOLUME_MARKER), 'utf8')),
  );
  return {
    luksUuid: marker.luksUuid,
    recoveryKey: await readFile(join(rdir, 'recovery-key'), 'utf8'),
    phoneKey: new Uint8Array(await readFile(join(rdir, 'phone-key'))),
    headerBackup: new Uint8Array(await readFile(join(rdir, 'luks-header.img'))),
  };
}

/** Storage.escrow (storage.ts documents the two forms). */
export async function escrowOnce(
  ctx: Pick<StorageContext, 'deps' | 'mountPoint' | 'now'>,
  port: EscrowPort,
  signal: AbortSignal,
  opts?: { recipients: readonly string[] },
): Promise<boolean | readonly string[]> {
  const flag = join(ctx.mountPoint, RECOVERY_DIR, 'escrowed.json');
  const raw = await ctx.deps.fs.readIfExists(flag);
  const prev =
    raw === undefined ? undefined : EscrowedMarker.safeParse(JSON.parse(raw.toString('utf8'))).data;
  if (opts === undefined) {
    if (raw !== undefined) return false;
    await port.escrow(await recoveryMaterial(ctx), signal);
    await ctx.deps.fs.writeFileAtomic(
      flag,
      JSON.stringify({ escrowedAt: ctx.now().toISOString() }) + '\n',
      'escrowed',
    );
    return true;
  }
  const done = new Set(prev?.phones ?? []);
  const todo = opts.recipients.filter((p) => !done.has(p));
  if (todo.length === 0) return [];
  await port.escrow(await recoveryMaterial(ctx), signal, todo);
  await ctx.deps.fs.writeFileAtomic(
    flag,
    JSON.stringify({
      escrowedAt: ctx.now().toISOString(),
      phones: [...done, ...todo],
    }) + '\n',
    'escrowed',
  );
  return todo;
}

/**
 * Restore the LUKS header from a backup image. Refuses an image that is not
 * a LUKS2 header, or (unless `force`) whose UUID differs from the volume this
 * device was formatted with.
 */
export async function restoreHeader(
  ctx: StorageContext,
  file: string,
  opts: { force?: boolean; device?: string; signal?: AbortSignal } = {},
): Promise<{ device: string; luksUuid: string }> {
  const luks = ctx.deps.luks;
  const device = opts.device ?? (await ctx.findDevice(opts.signal));
  if (device === undefined)
    throw new LuksError('ELUKS_NO_DEVICE', '', 'no data partition found; pass --device');
  if (!(await luks.isLuks(file, opts.signal)))
    throw new LuksError('ELUKS_NOT_LUKS', file, `${file} is not a LUKS header backup`);
  const backup = await luks.dump(file, opts.signal);
  const rec = await readRecord(ctx);
  if (opts.force !== true && rec !== undefined && rec.luksUuid !== backup.uuid) {
    throw new LuksError(
      'ELUKS_FAILED',
      device,
      `header backup is for volume ${backup.uuid}, but ${device} was formatted as ${rec.luksUuid} (use --force to override)`,
    );
  }
  if ((await luks.status(ctx.config.mapperName, opts.signal)) !== undefined)
    throw new LuksError(
      'ELUKS_BUSY',
      device,
      `the volume is open as ${ctx.mapperPath}; close it before restoring the header`,
    );
  await luks.headerRestore(device, file, opts.signal);
  ctx.log.warn('LUKS header restored from backup', { device, luksUuid: backup.uuid });
  return { device, luksUuid: backup.uuid };
}
