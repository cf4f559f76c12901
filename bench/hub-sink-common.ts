/**
 * The hub's real ciphertext sink for benchmarks: the local copy (HubRetention) in front of
 * the durable uplink queue, whose sender posts to a stand-in relay that acknowledges every
 * append at once. Shared by bench/hub-sink.ts and bench/media-recording-hub.ts.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { HttpRequester } from '../base/http.js';
import type { Logger } from '../base/logger.js';
import { HubRetention } from '../firmware/storage/hub-retention.js';
import { DEFAULT_RETENTION_POLICY } from '../firmware/storage/retention.js';
import { createUplink, type Uplink } from '../firmware/uplink/uplink.js';
import { DurableFs } from '../hw/os/fs.js';

/**
 * A relay that acknowledges every append at once (what the uplink's sender parses), in
 * memory: no socket, the hub's own work only (the HTTP client's cost: bench/hub-floor.ts).
 */
export function ackingRelayHttp(onBytes: (n: number) => void): HttpRequester {
  return (input, init) => {
    const url = new URL(input);
    const body = init?.body;
    const n = typeof body === 'string' ? Buffer.byteLength(body) : (body?.length ?? 0);
    onBytes(n);
    const answer = Buffer.from(
      JSON.stringify({
        itemId: decodeURIComponent(url.pathname.split('/').pop() ?? ''),
        seq: 1,
        received: Number(url.searchParams.get('offset') ?? 0) + n,
        complete: url.searchParams.get('final') === '1',
      }),
    );
    const bytes = (): Promise<Buffer> => Promise.resolve(answer);
    return Promise.resolve({
      status: 200,
      ok: true,
      header: (name: string) =>
        name.toLowerCase() === 'content-type' ? 'application/json' : undefined,
      bytes,
      text: async () => (await bytes()).toString('utf8'),
      json: async () => JSON.parse((await bytes()).toString('utf8')) as unknown,
      chunks: async function* () {
        yield answer;
      },
      discard: () => undefined,
    });
  };
}

/**
 * The same stand-in relay on a loopback port (run it in another process than the hub's): the
 * hub's HTTP client, sockets and buffers are then part of what the hub process holds.
 */
export async function startAckingRelay(): Promise<{
  url: string;
  close: () => void;
  stats: () => { requests: number; connections: number };
}> {
  let requests = 0;
  let connections = 0;
  const s = createServer((req, res) => {
    requests++;
    const url = new URL(req.url ?? '/', 'http://relay');
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          itemId: decodeURIComponent(url.pathname.split('/').pop() ?? ''),
          seq: 1,
          received: Number(url.searchParams.get('offset') ?? 0) + n,
          complete: url.searchParams.get('final') === '1',
        }),
      );
    });
  });
  s.on('connection', () => connections++);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    stats: () => ({ requests, connections }),
    url: `http://127.0.0.1:${String((s.address() as AddressInfo).port)}`,
    close: () => {
      s.closeAllConnections();
      s.close();
    },
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
  http: HttpRequester;
  /** The stand-in relay's URL (default: an invalid one, for the in-memory client). */
  relayUrl?: string;
  backlog?: boolean;
}): Promise<BenchHubSink> {
  const fs = new DurableFs();
  const dataDir = join(opts.root, 'data');
  const uplink = await createUplink({
    relayUrl: opts.relayUrl ?? 'http://relay.invalid',
    credentials: { deviceId: opts.deviceId, token: `d.${opts.deviceId}.bench` },
    stateDir: join(dataDir, 'uplink'),
    fs,
    logger: opts.logger,
    http: opts.http,
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
