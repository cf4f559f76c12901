/**
 * Composition of the real storage stack (cryptsetup, util-linux, OTP) from
 * the hub's configuration and a few environment overrides. Used by the
 * supervisor's production services and by `vigil storage`.
 *
 * Environment (all optional):
 *   VIGIL_STORAGE_DEVICE  data partition path (default: found by partition label "vigil-data")
 *   VIGIL_STORAGE_CIPHER  auto | adiantum | aes-xts   (default auto: from /proc/cpuinfo)
 *   VIGIL_OTP             auto | none | vcmailbox | vcmailbox-private | rpi-fw-crypto | board-serial | simulated:<file>
 *   VIGIL_DEV_KEYFILE     key file of the development-only source (default /var/lib/vigil/dev-luks.key)
 *   VIGIL_KEY_DIR         tmpfs directory for transient key files (default /run/vigil/keys)
 */
import { randomBytes } from 'node:crypto';
import { constants as FS } from 'node:fs';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { UtilLinuxBlockDevices } from '../../hw/luks/block.js';
import { CryptsetupLuks } from '../../hw/luks/cryptsetup.js';
import { SecretFiles } from '../../hw/luks/secret-files.js';
import { CrashController, DurableFs } from '../../hw/os/fs.js';
import type { HostPaths } from '../../hw/os/host-paths.js';
import { ValidationError } from '../../base/errors.js';
import type { Logger } from '../../base/logger.js';
import {
  BoardSerialOtpDeriver,
  DevKeyfileSource,
  OtpKeySource,
  PhoneKeySource,
  RpiFwCryptoOtpDeriver,
  SimulatedOtpDeriver,
  VcmailboxOtpDeriver,
} from './key-sources.js';
import type { KeySource, KeySourceId, OtpDeriver, PhoneUnlockPort } from './key-sources.js';
import { Storage } from './storage.js';
import type { StorageConfig } from './storage.js';

const EnvSchema = z.object({
  VIGIL_STORAGE_DEVICE: z.string().startsWith('/').optional(),
  VIGIL_STORAGE_CIPHER: z.enum(['auto', 'adiantum', 'aes-xts']).optional(),
  VIGIL_OTP: z
    .string()
    .regex(
      /^(auto|none|vcmailbox|vcmailbox-private|rpi-fw-crypto|board-serial|simulated:\/.+)$/,
      'auto|none|vcmailbox|vcmailbox-private|rpi-fw-crypto|board-serial|simulated:/path',
    )
    .optional(),
  VIGIL_DEV_KEYFILE: z.string().startsWith('/').optional(),
  VIGIL_KEY_DIR: z.string().startsWith('/').optional(),
});
export type StorageEnv = z.infer<typeof EnvSchema>;

export function parseStorageEnv(env: NodeJS.ProcessEnv): StorageEnv {
  const r = EnvSchema.safeParse(env);
  if (!r.success)
    throw new ValidationError(
      `bad storage environment: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  return r.data;
}

/** The board-serial key's per-card salt (root filesystem, outside the volume). */
export const BOARD_SALT_FILE = '/var/lib/vigil/storage/board-key.salt';

/** Pick the OTP backend for this board. */
export async function detectOtpDeriver(
  setting: string,
  paths: HostPaths,
): Promise<OtpDeriver | undefined> {
  if (setting === 'none') return undefined;
  if (setting.startsWith('simulated:'))
    return new SimulatedOtpDeriver(setting.slice('simulated:'.length));
  if (setting === 'vcmailbox') return new VcmailboxOtpDeriver({ region: 'customer' });
  if (setting === 'vcmailbox-private') return new VcmailboxOtpDeriver({ region: 'private' });
  if (setting === 'rpi-fw-crypto') return new RpiFwCryptoOtpDeriver();
  const boardSerial = (): BoardSerialOtpDeriver =>
    new BoardSerialOtpDeriver({
      serialFile: paths.host('/proc/device-tree/serial-number'),
      saltFile: paths.host(BOARD_SALT_FILE),
    });
  if (setting === 'board-serial') return boardSerial();
  const model = await readFile(paths.host('/proc/device-tree/model'), 'utf8').catch(() => '');
  if (/Raspberry Pi 5|Raspberry Pi Compute Module 5|Raspberry Pi 500/.test(model))
    return new RpiFwCryptoOtpDeriver();
  if (/Raspberry Pi/.test(model)) {
    // Raspberry Pi's kernel has the mailbox device (and raspi-utils' vcmailbox); Debian's
    // kernel has neither, so the OTP serial row stands in (key-sources.ts explains the cost).
    const vcio = await stat(paths.host('/dev/vcio')).then(
      () => true,
      () => false,
    );
    return vcio ? new VcmailboxOtpDeriver({ region: 'customer' }) : boardSerial();
  }
  return undefined;
}

/** Development only: make the key file on first use (0600), so a dev hub can format its volume. */
export async function ensureDevKeyfile(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  try {
    const fh = await open(file, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, 0o600);
    try {
      await fh.writeFile(randomBytes(32));
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

export interface RealStorageOptions {
  readonly paths: HostPaths;
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv;
  readonly fs?: DurableFs;
  /** Order of key sources (the hub config's storage.keySources). */
  readonly keySources?: readonly KeySourceId[];
  /** Mount point (the hub config's storage.dataDir). */
  readonly dataDir?: string;
  /** Phone unlock over the config group (from the E2EE layer); without it 'phone' is skipped. */
  readonly phone?: PhoneUnlockPort;
  readonly config?: Partial<StorageConfig>;
}

export async function createRealStorage(opts: RealStorageOptions): Promise<Storage> {
  const env = parseStorageEnv(opts.env ?? process.env);
  const log = opts.logger.child('storage');
  const secretFiles = new SecretFiles({
    baseDir: env.VIGIL_KEY_DIR ?? opts.paths.host('/run/vigil/keys'),
  });
  const luks = new CryptsetupLuks({ secretFiles });
  const sources: KeySource[] = [];
  for (const id of opts.keySources ?? ['otp', 'phone', 'recovery']) {
    switch (id) {
      case 'otp': {
        const d = await detectOtpDeriver(env.VIGIL_OTP ?? 'auto', opts.paths);
        if (d) sources.push(new OtpKeySource(d));
        else log.info('no OTP key source on this board');
        break;
      }
      case 'phone':
        if (opts.phone) sources.push(new PhoneKeySource(opts.phone));
        break;
      case 'recovery':
        // typed at the console: `vigil storage unlock --recovery` (the waiting hub notices)
        break;
      case 'dev-keyfile': {
        const file = env.VIGIL_DEV_KEYFILE ?? opts.paths.host('/var/lib/vigil/dev-luks.key');
        await ensureDevKeyfile(file);
        sources.push(new DevKeyfileSource(file, log));
        break;
      }
    }
  }
  return new Storage({
    luks,
    block: new UtilLinuxBlockDevices(),
    fs: opts.fs ?? new DurableFs(CrashController.fromEnv()),
    paths: opts.paths,
    logger: opts.logger,
    keySources: sources,
    config: {
      ...(env.VIGIL_STORAGE_DEVICE !== undefined ? { device: env.VIGIL_STORAGE_DEVICE } : {}),
      ...(env.VIGIL_STORAGE_CIPHER !== undefined ? { cipher: env.VIGIL_STORAGE_CIPHER } : {}),
      ...(opts.dataDir !== undefined ? { mountPoint: opts.dataDir } : {}),
      ...opts.config,
    },
  });
}
