/**
 * First boot of the data volume: luksFormat (after the record says so), the
 * filesystem, then the idempotent completion — recovery and phone keys, header
 * backup, provisioning secrets moved in, the Vigil marker, `vigil-ready`.
 * Storage (storage.ts) decides *when* (plan.ts); this file does it.
 */
import { randomUUID } from 'node:crypto';
import { chmod, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { CIPHER_PROFILES } from '../../hw/luks/luks.js';
import type { LuksDump } from '../../hw/luks/luks.js';
import { Locked, readRecord, writeRecord } from './context.js';
import type { StorageContext, StorageRecord } from './context.js';
import type { KeySourceId } from './key-sources.js';
import { MACHINE_KEY_PBKDF, chooseCipher, memTotalKiB, passphrasePbkdf } from './params.js';
import {
  FS_LABEL,
  KEYSLOTS_SIZE,
  LUKS_LABEL,
  RECOVERY_DIR,
  SECRETS_DIR,
  SUBSYSTEM_NEW,
  SUBSYSTEM_READY,
  VOLUME_MARKER,
} from './plan.js';
import { generateRecoveryKey, recoveryKeyBytes } from './recovery-key.js';

/**
 * Write the record (the intent, durable before a byte of the device changes),
 * then luksFormat the device with the machine key. Returns that key for the open.
 */
export async function formatVolume(
  ctx: StorageContext,
  device: string,
  previous: StorageRecord | undefined,
  signal: AbortSignal,
): Promise<{ id: KeySourceId; key: Uint8Array }> {
  const d = ctx.deps;
  const mk = await ctx.machineKey(signal);
  if (mk === undefined)
    throw new Locked(
      'no-machine-key',
      'first boot needs a machine key source (OTP, or the development key file); none is available',
      [],
    );
  const cpuinfo = await (d.readCpuInfo ?? (() => readFile('/proc/cpuinfo', 'utf8')))().catch(
    () => '',
  );
  const profile = chooseCipher(cpuinfo, ctx.config.cipher);
  const partUuid = (await d.block.list(signal).catch(() => [])).find(
    (b) => b.path === device,
  )?.partUuid;
  const rec: StorageRecord = {
    format: 'vigil-storage-record',
    version: 1,
    device,
    ...(partUuid !== undefined
      ? { partUuid }
      : previous?.partUuid !== undefined
        ? { partUuid: previous.partUuid }
        : {}),
    luksUuid: randomUUID(),
    phase: 'formatting',
    cipher: CIPHER_PROFILES[profile].cipher,
    startedAt: ctx.now().toISOString(),
  };
  // The intent is durable before a single byte of the device changes.
  await writeRecord(ctx, rec);
  ctx.emit({ state: 'formatting', step: 'luksFormat', device });
  ctx.log.info('formatting the data volume', {
    device,
    cipher: rec.cipher,
    luksUuid: rec.luksUuid,
  });
  await d.luks.format(
    device,
    mk.key,
    {
      ...CIPHER_PROFILES[profile],
      pbkdf: MACHINE_KEY_PBKDF,
      uuid: rec.luksUuid,
      label: LUKS_LABEL,
      subsystem: SUBSYSTEM_NEW,
      keyslotsSizeBytes: KEYSLOTS_SIZE,
    },
    signal,
  );
  return mk;
}

/** Is this opened volume still in its first boot (`vigil-new`)? */
export function isFirstBoot(dump: LuksDump | undefined): dump is LuksDump {
  return dump?.subsystem === SUBSYSTEM_NEW;
}

/** First boot, the mapping open: make the filesystem unless it is there already. */
export async function ensureFilesystem(
  ctx: StorageContext,
  device: string,
  signal: AbortSignal,
): Promise<void> {
  ctx.emit({ state: 'formatting', step: 'filesystem', device });
  const probe = await ctx.deps.block.probe(ctx.mapperPath, signal);
  if (probe.TYPE === undefined) await ctx.deps.block.mkfsExt4(ctx.mapperPath, FS_LABEL, signal);
  else if (probe.TYPE !== 'ext4')
    throw new Locked('foreign-data', `the opened volume holds ${probe.TYPE}, not ext4`, []);
}

/**
 * Idempotent first-boot completion, each step safe to repeat after a crash:
 * recovery key + phone key (written inside the volume before their keyslots
 * are added, so a crash never leaves a slot whose key nobody has), header
 * backup, provisioning secrets, Vigil marker, then `vigil-ready`.
 */
export async function completeFirstBoot(
  ctx: StorageContext,
  device: string,
  dump: LuksDump,
  signal: AbortSignal,
): Promise<void> {
  const d = ctx.deps;
  const fs = d.fs;
  const rdir = join(ctx.mountPoint, RECOVERY_DIR);
  await fs.ensureDir(rdir);
  await chmod(rdir, 0o700);
  const mk = await ctx.machineKey(signal);
  const auth = mk?.key;
  if (auth === undefined)
    throw new Locked('no-machine-key', 'cannot finish first boot: no machine key source', []);

  ctx.emit({ state: 'formatting', step: 'recovery-keys', device });
  const rkPath = join(rdir, 'recovery-key');
  // A key made just now cannot have a keyslot yet; only a resumed run needs the (slow) test.
  let rk = (await fs.readIfExists(rkPath))?.toString('utf8');
  const rkNew = rk === undefined;
  if (rk === undefined) {
    rk = generateRecoveryKey(ctx.random);
    await fs.writeFileAtomic(rkPath, rk, 'recovery-key');
  }
  if (rkNew || !(await d.luks.testKey(device, recoveryKeyBytes(rk), signal))) {
    const meminfo = await (d.readMemInfo ?? (() => readFile('/proc/meminfo', 'utf8')))().catch(
      () => '',
    );
    const pbkdf = passphrasePbkdf(memTotalKiB(meminfo), d.cpuCount ?? cpus().length);
    await d.luks.addKey(device, auth, recoveryKeyBytes(rk), { pbkdf, signal });
  }
  const pkPath = join(rdir, 'phone-key');
  let pk = await fs.readIfExists(pkPath);
  const pkNew = pk?.length !== 32;
  if (pk?.length !== 32) {
    pk = Buffer.from(ctx.random(32));
    await fs.writeFileAtomic(pkPath, pk, 'phone-key');
  }
  if (pkNew || !(await d.luks.testKey(device, pk, signal)))
    await d.luks.addKey(device, auth, pk, { pbkdf: MACHINE_KEY_PBKDF, signal });

  ctx.emit({ state: 'formatting', step: 'header-backup', device });
  await backupHeaderInto(ctx, device, join(rdir, 'luks-header.img'), signal);

  ctx.emit({ state: 'formatting', step: 'provisioning-secrets', device });
  await moveProvisioningSecrets(ctx);

  await fs.writeFileAtomic(
    join(ctx.mountPoint, VOLUME_MARKER),
    JSON.stringify({
      format: 'vigil-volume',
      version: 1,
      luksUuid: dump.uuid,
      createdAt: ctx.now().toISOString(),
    }) + '\n',
    'volume-marker',
  );
  await d.luks.setSubsystem(device, SUBSYSTEM_READY, signal);
  const rec = await readRecord(ctx);
  const partUuid =
    rec?.partUuid ??
    (await d.block.list(signal).catch(() => [])).find((b) => b.path === device)?.partUuid;
  await writeRecord(ctx, {
    format: 'vigil-storage-record',
    version: 1,
    device,
    ...(partUuid !== undefined ? { partUuid } : {}),
    luksUuid: dump.uuid,
    phase: 'ready',
    cipher: dump.segments[0]?.encryption ?? rec?.cipher ?? '',
    startedAt: rec?.startedAt ?? ctx.now().toISOString(),
    readyAt: ctx.now().toISOString(),
  });
  ctx.log.info('data volume ready', { device, luksUuid: dump.uuid });
}

/** Fresh header backup written durably to `dest` (the backup tool refuses existing files, so go via a temp name). */
async function backupHeaderInto(
  ctx: StorageContext,
  device: string,
  dest: string,
  signal: AbortSignal,
): Promise<void> {
  const tmp = `${dest}.new`;
  await rm(tmp, { force: true });
  await ctx.deps.luks.headerBackup(device, tmp, signal);
  const data = await readFile(tmp);
  await ctx.deps.fs.writeFileAtomic(dest, data, 'luks-header-backup');
  await rm(tmp, { force: true });
}

/**
 * Move every file of the provisioning directory (/boot/vigil-provisioning,
 * plaintext on the boot partition) into the volume, then overwrite the
 * plaintext copies with zeros and remove them. Crash-safe: an existing copy
 * in the volume is never replaced (the plaintext may already be zeroed).
 * Residual risk: flash wear levelling can keep the old blocks (docs/storage.md).
 */
export async function moveProvisioningSecrets(
  ctx: Pick<StorageContext, 'deps' | 'mountPoint'>,
): Promise<number> {
  const fs = ctx.deps.fs;
  const src = ctx.deps.paths.provisioningDir;
  let names: string[];
  try {
    names = (await readdir(src)).filter((n) => !n.startsWith('.'));
  } catch {
    return 0;
  }
  const dest = join(ctx.mountPoint, SECRETS_DIR);
  await fs.ensureDir(dest);
  await fs.cleanTemp(dest);
  await chmod(dest, 0o700);
  let moved = 0;
  for (const name of names) {
    const from = join(src, name);
    if (!(await stat(from)).isFile()) continue;
    const to = join(dest, name);
    const data = await readFile(from);
    const existing = await fs.readIfExists(to);
    if (existing === undefined) {
      await fs.writeFileAtomic(to, data, `secret-${name}`);
      await chmod(to, 0o600);
      const back = await readFile(to);
      if (!back.equals(data))
        throw new Error(`copy of ${name} into the volume does not read back equal`);
    }
    await overwriteInPlace(from, data.length);
    await fs.remove(from, `secret-plain-${name}`);
    moved += 1;
  }
  return moved;
}

/** Overwrite a file's bytes with zeros in place and fsync (before unlinking it). */
async function overwriteInPlace(path: string, length: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(Buffer.alloc(length), 0, length, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
