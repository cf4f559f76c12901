import t from 'tap';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { MemoryLogger } from '../../../base/logger.js';
import {
  createRealStorage,
  detectOtpDeriver,
  ensureDevKeyfile,
  parseStorageEnv,
} from '../../../firmware/storage/real.js';

void t.test('environment is validated', async (t) => {
  t.same(parseStorageEnv({ VIGIL_OTP: 'simulated:/x', VIGIL_STORAGE_CIPHER: 'adiantum' }), {
    VIGIL_OTP: 'simulated:/x',
    VIGIL_STORAGE_CIPHER: 'adiantum',
  });
  t.throws(() => parseStorageEnv({ VIGIL_OTP: 'magic' }), { code: 'EVALIDATION' });
  t.throws(() => parseStorageEnv({ VIGIL_STORAGE_DEVICE: 'relative' }), /VIGIL_STORAGE_DEVICE/);
});

void t.test('OTP backend per board', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-real-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const paths = new HostPaths(root);
  t.equal(await detectOtpDeriver('auto', paths), undefined, 'not a Pi: no OTP');
  await mkdir(paths.host('/proc/device-tree'), { recursive: true });
  await writeFile(paths.host('/proc/device-tree/model'), 'Raspberry Pi 4 Model B Rev 1.5\0');
  t.equal(
    (await detectOtpDeriver('auto', paths))?.kind,
    'board-serial',
    "Debian's kernel (no /dev/vcio): the OTP serial row stands in",
  );
  await mkdir(paths.host('/dev'), { recursive: true });
  await writeFile(paths.host('/dev/vcio'), '');
  t.equal(
    (await detectOtpDeriver('auto', paths))?.kind,
    'vcmailbox-customer',
    "Raspberry Pi's kernel: customer OTP through the mailbox",
  );
  t.equal((await detectOtpDeriver('board-serial', paths))?.kind, 'board-serial');
  await writeFile(paths.host('/proc/device-tree/model'), 'Raspberry Pi 5 Model B Rev 1.0\0');
  t.equal((await detectOtpDeriver('auto', paths))?.kind, 'rpi-fw-crypto');
  t.equal(await detectOtpDeriver('none', paths), undefined);
  t.equal((await detectOtpDeriver('simulated:/x', paths))?.kind, 'simulated');
  t.equal((await detectOtpDeriver('vcmailbox', paths))?.kind, 'vcmailbox-customer');
  t.equal((await detectOtpDeriver('vcmailbox-private', paths))?.kind, 'vcmailbox-private');
  t.equal((await detectOtpDeriver('rpi-fw-crypto', paths))?.kind, 'rpi-fw-crypto');
});

void t.test('dev key file is created once, private', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-real-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const f = join(root, 'a', 'dev.key');
  await ensureDevKeyfile(f);
  const first = await readFile(f);
  t.equal(first.length, 32);
  t.equal((await stat(f)).mode & 0o777, 0o600);
  await ensureDevKeyfile(f);
  t.same(await readFile(f), first, 'never replaced');
});

void t.test('createRealStorage wires the configured sources', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-real-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const logger = new MemoryLogger();
  const s = await createRealStorage({
    paths: new HostPaths(root),
    logger,
    env: { VIGIL_OTP: 'none', VIGIL_STORAGE_DEVICE: '/dev/vdb', VIGIL_STORAGE_CIPHER: 'aes-xts' },
    keySources: ['otp', 'dev-keyfile', 'phone', 'recovery'],
    dataDir: '/srv/data',
  });
  t.equal(s.config.device, '/dev/vdb');
  t.equal(s.config.cipher, 'aes-xts');
  t.equal(s.mountPoint, join(root, 'srv/data'));
  t.ok(logger.lines.some((l) => l.includes('DEVELOPMENT KEY SOURCE')));
  t.equal((await stat(join(root, 'var/lib/vigil/dev-luks.key'))).size, 32);
});
