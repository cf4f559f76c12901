/**
 * `vigil relay`: run the untrusted ciphertext relay.
 */
import { readFile } from 'node:fs/promises';
import type { Command, CommandContext } from '../base/command.js';
import { UsageError } from '../base/command.js';
import { JsonLogger } from '../base/logger.js';
import { CrashController, DurableFs } from '../hw/os/fs.js';
import { DEFAULT_LIMITS } from './limits.js';
import type { RelayLimits } from './limits.js';
import { startRelay } from './server.js';
import { DEFAULT_MAX_AGE_DAYS, startExpiry } from './expiry.js';
import type { RelayOptions } from './server.js';

const USAGE = `
Usage: vigil relay [options]

Runs the store-and-forward relay. It only ever holds ciphertext.

Options:
  --data-dir DIR          state directory (records, and blobs with the fs backend) [/var/lib/vigil-relay]
  --host ADDR             listen address [127.0.0.1]
  --port N                listen port (0: any free one) [8443]
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
  --max-age-days N        delete every account's items stored longer than N days [${DEFAULT_MAX_AGE_DAYS}]
`;

function parseArgs(argv: readonly string[]): Map<string, string> {
  const flags = new Set(['--trust-proxy']);
  const known = new Set([
    '--data-dir',
    '--host',
    '--port',
    '--tls-cert',
    '--tls-key',
    '--enroll-token-file',
    '--database',
    '--backend',
    '--s3-bucket',
    '--s3-endpoint',
    '--s3-region',
    '--s3-prefix',
    '--max-item-mb',
    '--max-device-mb',
    '--max-devices',
    '--registrations-per-address',
    '--max-connections-per-address',
    '--live-memory-mb',
    '--log-level',
    '--max-age-days',
  ]);
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (flags.has(a)) {
      out.set(a, '1');
      continue;
    }
    if (!known.has(a)) throw new UsageError(`unknown option ${a}`);
    const v = argv[i + 1];
    if (v === undefined) throw new UsageError(`${a} needs a value`);
    out.set(a, v);
    i++;
  }
  return out;
}

function posInt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(v)) throw new UsageError(`${name} must be a positive integer`);
  return Number(v);
}

export const command: Command = {
  name: 'relay',
  summary: 'run the untrusted ciphertext relay',
  usage: USAGE,
  async run(ctx: CommandContext): Promise<number> {
    const a = parseArgs(ctx.argv);
    const level = a.get('--log-level') ?? 'info';
    if (!['debug', 'info', 'warn', 'error'].includes(level))
      throw new UsageError('--log-level must be debug, info, warn or error');
    const logger = new JsonLogger('vigil.relay', {
      level: level as 'info',
      write: (l) => {
        ctx.stdout(l + '\n');
      },
    });
    const maxAgeDays = posInt(a.get('--max-age-days'), '--max-age-days') ?? DEFAULT_MAX_AGE_DAYS;
    if (maxAgeDays > 3650) throw new UsageError('--max-age-days must be at most 3650');
    // --port 0: any free port (the address is printed)
    const port = a.get('--port') === '0' ? 0 : (posInt(a.get('--port'), '--port') ?? 8443);
    if (port > 65535) throw new UsageError('--port must be at most 65535');
    const limits: Partial<{ -readonly [K in keyof RelayLimits]: RelayLimits[K] }> = {};
    const itemMb = posInt(a.get('--max-item-mb'), '--max-item-mb');
    if (itemMb !== undefined) limits.maxItemBytes = itemMb * 1048576;
    const devMb = posInt(a.get('--max-device-mb'), '--max-device-mb');
    if (devMb !== undefined) limits.maxDeviceBytes = devMb * 1048576;
    const maxDevices = posInt(a.get('--max-devices'), '--max-devices');
    if (maxDevices !== undefined) limits.maxDevices = maxDevices;
    const regs = posInt(a.get('--registrations-per-address'), '--registrations-per-address');
    if (regs !== undefined) limits.maxRegistrationsPerAddress = regs;
    const conns = posInt(a.get('--max-connections-per-address'), '--max-connections-per-address');
    if (conns !== undefined) limits.maxConnectionsPerAddress = conns;
    const liveMb = posInt(a.get('--live-memory-mb'), '--live-memory-mb');
    if (liveMb !== undefined) limits.liveTotalBytes = liveMb * 1048576;
    const certFile = a.get('--tls-cert');
    const keyFile = a.get('--tls-key');
    if ((certFile === undefined) !== (keyFile === undefined))
      throw new UsageError('--tls-cert and --tls-key go together');
    const enrollFile = a.get('--enroll-token-file');
    const backend = a.get('--backend') ?? 'fs';
    if (backend !== 'fs' && backend !== 's3') throw new UsageError('--backend must be fs or s3');
    const opts: { -readonly [K in keyof RelayOptions]: RelayOptions[K] } = {
      dataDir: a.get('--data-dir') ?? '/var/lib/vigil-relay',
      host: a.get('--host') ?? '127.0.0.1',
      port,
      logger,
      limits,
      fs: new DurableFs(CrashController.fromEnv(ctx.env)),
      trustProxy: a.has('--trust-proxy'),
    };
    if (certFile !== undefined && keyFile !== undefined)
      opts.tls = { cert: await readFile(certFile), key: await readFile(keyFile) };
    const database = a.get('--database');
    if (database !== undefined) {
      if (!/^postgres(ql)?:\/\//.test(database))
        throw new UsageError('--database must be a postgres:// URL');
      opts.database = database;
    }
    if (enrollFile !== undefined) opts.enrollToken = (await readFile(enrollFile, 'utf8')).trim();
    if (backend === 's3') {
      const bucket = a.get('--s3-bucket');
      if (bucket === undefined) throw new UsageError('--backend s3 needs --s3-bucket');
      const { S3BlobStore } = await import('./s3-store.js');
      const endpoint = a.get('--s3-endpoint');
      const prefix = a.get('--s3-prefix');
      opts.blobs = new S3BlobStore({
        bucket,
        region: a.get('--s3-region') ?? 'us-east-1',
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
