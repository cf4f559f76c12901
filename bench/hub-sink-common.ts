/**
 * The hub's real ciphertext sink for benchmarks: the local copy (HubRetention) in front of
 * the durable uplink queue, whose sender posts to a stand-in relay that acknowledges every
 * append at once. Shared by bench/hub-sink.ts and bench/media-recording-hub.ts.
 */
import { join } from 'node:path';
import type { Logger } from '../base/logger.js';
import { HubRetention } from '../firmware/storage/hub-retention.js';
import { DEFAULT_RETENTION_POLICY } from '../firmware/storage/retention.js';
import { createUplink, type Uplink } from '../firmware/uplink/uplink.js';
import { DurableFs } from '../hw/os/fs.js';

/** A relay that acknowledges every append at once (what the uplink's sender parses). */
export function ackingRelayFetch(onBytes: (n: number) => void): typeof fetch {
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = init?.body as Uint8Array | undefined;
    onBytes(body?.length ?? 0);
    return Promise.resolve(
      Response.json({
        itemId: decodeURIComponent(url.pathname.split('/').pop() ?? ''),
        seq: 1,
        received: Number(url.searchParams.get('offset') ?? 0) + (body?.length ?? 0),
        complete: url.searchParams.get('final') === '1',
      }),
    );
  };
}

export interface BenchHubSink {
  readonly uplink: Uplink;
  readonly retention: HubRetention;
  /** `<root>/data`: the local copies under clips/, the queue under uplink/. */
  readonly dataDir: string;
}

/**
 * Open the sink under `<root>/data` (64 GiB card, half free). The sender is not started;
 * `backlog` wires the queue's backlog cap into retention as the hub does.
 */
export async function openBenchHubSink(opts: {
  root: string;
  deviceId: string;
  logger: Logger;
  fetch: typeof fetch;
  backlog?: boolean;
}): Promise<BenchHubSink> {
  const fs = new DurableFs();
  const dataDir = join(opts.root, 'data');
  const uplink = await createUplink({
    relayUrl: 'http://relay.invalid',
    credentials: { deviceId: opts.deviceId, token: `d.${opts.deviceId}.bench` },
    stateDir: join(dataDir, 'uplink'),
    fs,
    logger: opts.logger,
    fetch: opts.fetch,
  });
  const retention = await HubRetention.open({
    root: dataDir,
    fs,
    stats: () => Promise.resolve({ totalBytes: 64 * 2 ** 30, freeBytes: 32 * 2 ** 30 }),
    logger: opts.logger,
    policy: DEFAULT_RETENTION_POLICY,
    intervalMs: 3_600_000,
    ...(opts.backlog === true ? { enforceBacklog: () => uplink.enforceBacklog() } : {}),
  });
  return { uplink, retention, dataDir };
}
