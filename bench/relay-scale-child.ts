/**
 * A relay process for bench/relay-scale.ts: `DATA_DIR [DATABASE_URL S3_ENDPOINT S3_BUCKET]`.
 * Files only without the database; PostgreSQL metadata and S3 blobs with it.
 * Per-address caps are lifted (every simulated hub connects from loopback).
 */
import { SILENT } from '../base/logger.js';
import { S3BlobStore } from '../relay/s3-store.js';
import { startRelay } from '../relay/server.js';

const [dataDir, database, endpoint, bucket] = process.argv.slice(2);
if (dataDir === undefined) throw new Error('usage: relay-scale-child.ts DATA_DIR [DB S3 BUCKET]');
const relay = await startRelay({
  dataDir,
  logger: SILENT,
  ...(database !== undefined && endpoint !== undefined && bucket !== undefined
    ? {
        database,
        blobs: new S3BlobStore({
          bucket,
          endpoint,
          credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
        }),
      }
    : {}),
  limits: {
    ratePerSec: 100_000,
    rateBurst: 100_000,
    maxDeviceItems: 100_000,
    maxRegistrationsPerAddress: 100_000,
    maxConnectionsPerAddress: 100_000,
  },
});
process.stdout.write(`relay-scale-child: listening on ${relay.url}\n`);
process.on('SIGTERM', () => {
  void relay.close().then(() => process.exit(0));
});
