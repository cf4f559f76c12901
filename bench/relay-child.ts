/**
 * A relay in its own process for the throughput benchmark (so its memory is
 * measured alone). Prints its URL on stdout, then a JSON line of stats on SIGTERM.
 */
import { SILENT } from '../base/logger.js';
import { startRelay } from '../relay/server.js';

const dataDir = process.argv[2];
if (dataDir === undefined) throw new Error('usage: relay-child.ts DATA_DIR');
const relay = await startRelay({
  dataDir,
  logger: SILENT,
  // every simulated hub and phone connects from loopback: lift the per-address caps
  limits: {
    ratePerSec: 100_000,
    rateBurst: 100_000,
    maxDeviceItems: 100_000,
    maxRegistrationsPerAddress: 100_000,
    maxConnectionsPerAddress: 100_000,
  },
});
process.stdout.write(`${relay.url}\n`);
process.on('SIGTERM', () => {
  void relay.close().then(() => process.exit(0));
});
