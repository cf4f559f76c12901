/**
 * `vigil relay`: run the untrusted ciphertext relay.
 */
import { readFile } from 'node:fs/promises';
import type { Command, CommandContext } from '../base/command.js';
import {
  LOG_LEVELS,
  UsageError,
  choiceOption,
  intOption,
  parseOptions,
  portOption,
} from '../base/command.js';
import { JsonLogger, LOG_FORMATS, chooseLogFormat } from '../base/logger.js';
import { CrashController, DurableFs } from '../hw/os/fs.js';
import { DEFAULT_LIMITS } from './limits.js';
import type { RelayLimits } from './limits.js';
import { startRelay } from './server.js';
import { DEFAULT_MAX_AGE_DAYS, startExpiry } from './expiry.js';
import { DEFAULT_UNSEEN_AFTER_MS } from './push.js';
import type { RelayOptions } from './server.js';

const USAGE = `
Usage: vigil relay [options]

Runs the store-and-forward relay. It only ever holds ciphertext.

Options:
  --data-dir DIR          state directory (records, and blobs with the fs backend) [/var/lib/vigil-relay]
  --host ADDR             listen address [127.0.0.1]
  --port N                listen port [8443]
  --tls-cert FILE         PEM certificate: serve HTTPS directly (with --tls-key)
  --tls-key FILE          PEM private key
  --trust-proxy           client address from X-Forwarded-For (only behind your own reverse proxy)
  --enroll-token-file F   require this token (file content) to register devices
  --database URL          metadata in PostgreSQL (postgres://user@host/db, or
                          postgres://user@/db?host=/run/postgresql for a socket);
                          password from PGPASSWORD; several relays may share it
                          (with --backend s3). Default: files under --data-dir
  --backend fs|s3         blob storage [fs]
  --s3-bucket NAME        bucket (s3 backend)
  --s3-endpoint URL       endpoint, e.g. http://127.0.0.1:9000 (MinIO); credentials from AWS_* env
  --s3-region REGION      [us-east-1]
  --s3-prefix PREFIX      key prefix inside the bucket
  --max-item-mb N         largest item [${DEFAULT_LIMITS.maxItemBytes / 1048576}]
  --max-device-mb N       storage quota per device [${DEFAULT_LIMITS.maxDeviceBytes / 1048576}]
  --max-devices N         device accounts in total [${DEFAULT_LIMITS.maxDevices}]
  --registrations-per-address N
                          device registrations per address per hour [${DEFAULT_LIMITS.maxRegistrationsPerAddress}]
  --max-connections-per-address N
                          open connections per client address [${DEFAULT_LIMITS.maxConnectionsPerAddress}]
  --live-memory-mb N      live video held in memory over all devices [${DEFAULT_LIMITS.liveTotalBytes / 1048576}]
  --log-level LEVEL       debug|info|warn|error [info]
  --log-format FORMAT     json|human [json; also VIGIL_LOG_FORMAT]
  --max-age-days N        delete every account's items stored longer than N days [${DEFAULT_MAX_AGE_DAYS}]
  --push-subject URL      VAPID contact for push services: mailto: or https: [mailto:operator@vigil-relay.invalid]
  --unseen-after-min N    push "hub unseen since" to its phones after N minutes without a
                          request from the hub; 0 turns it off [${DEFAULT_UNSEEN_AFTER_MS / 60_000}]
  --push-loopback-http    also accept http:// push endpoints on loopback (development only)
  --no-push               no push notifications (the push routes answer 501)
`;

const OPTIONS = {
  'data-dir': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'trust-proxy': { type: 'boolean' },
  'enroll-token-file': { type: 'string' },
  database: { type: 'string' },
  backend: { type: 'string' },
  's3-bucket': { type: 'string' },
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  's3-prefix': { type: 'string' },
  'max-item-mb': { type: 'string' },
  'max-device-mb': { type: 'string' },
  'max-devices': { type: 'string' },
  'registrations-per-address': { type: 'string' },
  'max-connections-per-address': { type: 'string' },
  'live-memory-mb': { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  'max-age-days': { type: 'string' },
  'push-subject': { type: 'string' },
  'unseen-after-min': { type: 'string' },
  'push-loopback-http': { type: 'boolean' },
  'no-push': { type: 'boolean' },
} as const;

const BIG = 1_000_000_000;

export const command: Command = {
  name: 'relay',
  summary: 'run the untrusted ciphertext relay',
  usage: USAGE,
  badValueExamples: [
    ['--port', 'abc'],
    ['--max-age-days', '0'],
    ['--backend', 'ftp'],
  ],
  async run(ctx: CommandContext): Promise<number> {
    const { values: v } = parseOptions(ctx.argv, OPTIONS);
    const level = choiceOption(v['log-level'], '--log-level', LOG_LEVELS) ?? 'info';
    choiceOption(v['log-format'], '--log-format', LOG_FORMATS);
    const format = chooseLogFormat(v['log-format'], ctx.env, false);
    if (format === undefined)
      throw new UsageError(`VIGIL_LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}`);
    const logger = new JsonLogger('vigil.relay', {
      level,
      format,
      write: (l) => {
        ctx.stdout(l + '\n');
      },
    });
    const maxAgeDays =
      intOption(v['max-age-days'], '--max-age-days', 1, 3650) ?? DEFAULT_MAX_AGE_DAYS;
    const port = portOption(v.port, '--port', true) ?? 8443;
    const limits: Partial<{ -readonly [K in keyof RelayLimits]: RelayLimits[K] }> = {};
    const itemMb = intOption(v['max-item-mb'], '--max-item-mb', 1, 1_000_000);
    if (itemMb !== undefined) limits.maxItemBytes = itemMb * 1048576;
    const devMb = intOption(v['max-device-mb'], '--max-device-mb', 1, 1_000_000_000);
    if (devMb !== undefined) limits.maxDeviceBytes = devMb * 1048576;
    const maxDevices = intOption(v['max-devices'], '--max-devices', 1, BIG);
    if (maxDevices !== undefined) limits.maxDevices = maxDevices;
    const regs = intOption(v['registrations-per-address'], '--registrations-per-address', 1, BIG);
    if (regs !== undefined) limits.maxRegistrationsPerAddress = regs;
    const conns = intOption(
      v['max-connections-per-address'],
      '--max-connections-per-address',
      1,
      BIG,
    );
    if (conns !== undefined) limits.maxConnectionsPerAddress = conns;
    const liveMb = intOption(v['live-memory-mb'], '--live-memory-mb', 1, 1_000_000);
    if (liveMb !== undefined) limits.liveTotalBytes = liveMb * 1048576;
    const certFile = v['tls-cert'];
    const keyFile = v['tls-key'];
    if ((certFile === undefined) !== (keyFile === undefined))
      throw new UsageError('--tls-cert and --tls-key go together');
    const enrollFile = v['enroll-token-file'];
    const backend = choiceOption(v.backend, '--backend', ['fs', 's3'] as const) ?? 'fs';
    const opts: { -readonly [K in keyof RelayOptions]: RelayOptions[K] } = {
      dataDir: v['data-dir'] ?? '/var/lib/vigil-relay',
      host: v.host ?? '127.0.0.1',
      port,
      logger,
      limits,
      fs: new DurableFs(CrashController.fromEnv(ctx.env)),
      trustProxy: v['trust-proxy'] === true,
    };
    const unseen = intOption(v['unseen-after-min'], '--unseen-after-min', 0, 999_999);
    const subject = v['push-subject'];
    if (subject !== undefined && !/^(mailto:\S+@\S+|https:\/\/\S+)$/.test(subject))
      throw new UsageError('--push-subject must be a mailto: address or an https: URL');
    if (v['no-push'] === true) opts.push = false;
    else
      opts.push = {
        allowLoopbackHttp: v['push-loopback-http'] === true,
        ...(subject !== undefined ? { subject } : {}),
        ...(unseen !== undefined ? { unseenAfterMs: unseen * 60_000 } : {}),
      };
    if (certFile !== undefined && keyFile !== undefined)
      opts.tls = { cert: await readFile(certFile), key: await readFile(keyFile) };
    const database = v.database;
    if (database !== undefined) {
      if (!/^postgres(ql)?:\/\//.test(database))
        throw new UsageError('--database must be a postgres:// URL');
      opts.database = database;
    }
    if (enrollFile !== undefined) opts.enrollToken = (await readFile(enrollFile, 'utf8')).trim();
    if (backend === 's3') {
      const bucket = v['s3-bucket'];
      if (bucket === undefined) throw new UsageError('--backend s3 needs --s3-bucket');
      const { S3BlobStore } = await import('./s3-store.js');
      const endpoint = v['s3-endpoint'];
      const prefix = v['s3-prefix'];
      opts.blobs = new S3BlobStore({
        bucket,
        region: v['s3-region'] ?? 'us-east-1',
        ...(endpoint !== undefined ? { endpoint } : {}),
        ...(prefix !== undefined ? { prefix } : {}),
      });
    }
    const relay = await startRelay(opts);
    const expiry = startExpiry(relay.core, { maxAgeMs: maxAgeDays * 86_400_000, logger });
    ctx.stderr(`vigil relay: listening on ${relay.url}\n`);
    const lost = await new Promise<Error | undefined>((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(undefined);
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      void relay.failed.then((e) => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve(e);
      });
    });
    await expiry.stop();
    await relay.close();
    if (lost) {
      // its state is no longer kept current: stop, and let the supervisor start it afresh
      ctx.stderr(`vigil relay: stopped: ${lost.message}\n`);
      return 1;
    }
    return 0;
  },
};
