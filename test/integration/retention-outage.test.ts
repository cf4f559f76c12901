/**
 * A relay outage longer than the upload backlog cap (docs/storage.md, "Retention"),
 * with the relay as a real `vigil relay` process that is stopped and restarted on
 * the same port and data directory:
 *
 *  - the hub keeps recording through the outage (every item is accepted);
 *  - the backlog stays within its cap by dropping the oldest unsent clips (never
 *    the thumbnails while clips remain), and the local copies are kept above the
 *    disk floor of a simulated small volume;
 *  - after the relay returns the phone is told, in its next heartbeat ack, how
 *    many items were dropped ("the hub dropped N items during a relay outage");
 *  - every item that was not dropped arrives at the phone, once.
 */
import t from 'tap';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../hw/os/fs.js';
import { spawnProcess } from '../../hw/os/run.js';
import type { Spawned } from '../../hw/os/run.js';
import { MemoryLogger, SILENT } from '../../base/logger.js';
import { createUplink } from '../../firmware/uplink/uplink.js';
import { DropLedger } from '../../firmware/uplink/drop-ledger.js';
import { HubRetention } from '../../firmware/storage/hub-retention.js';
import { RelayConfigChannel } from '../../firmware/mls/config-channel.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { E2eeCrypto, droppedLine } from '../../app/e2ee-crypto.js';
import { ItemStore } from '../../app/store.js';
import { Syncer } from '../../app/sync.js';
import { pairedOverRelay, sealItem, sealerFor } from '../../dev/fixtures/paired-hub.js';
import { tempDir } from '../relay/fixtures.js';
import { freePort } from '../../dev/fixtures/net.js';

const VIGIL = ['--import', 'tsx', join(import.meta.dirname, '..', '..', 'bin', 'vigil.ts')];

/** Start `vigil relay` and resolve once it says it listens. */
async function startRelayProcess(dataDir: string, port: number): Promise<Spawned> {
  const p = spawnProcess(
    process.execPath,
    [...VIGIL, 'relay', '--data-dir', dataDir, '--port', String(port), '--log-level', 'warn'],
    { stdout: 'pipe', stderr: 'pipe' },
  );
  let err = '';
  await new Promise<void>((resolve, reject) => {
    p.child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) resolve();
    });
    p.child.once('exit', (code) => {
      reject(new Error(`vigil relay exited (${String(code)}): ${err}`));
    });
  });
  return p;
}

async function du(dir: string): Promise<number> {
  let n = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += await du(p);
    else if (e.isFile()) n += (await stat(p)).size;
  }
  return n;
}

t.test('a relay outage longer than the backlog cap', async (t) => {
  const { dir: root, cleanup } = await tempDir('vigil-retention-');
  const closers: (() => Promise<unknown>)[] = [cleanup];
  t.teardown(async () => {
    for (const c of closers) await c().catch(() => undefined);
  });
  const fs = new DurableFs();
  const port = await freePort();
  const relayDir = join(root, 'relay');
  let relay = await startRelayProcess(relayDir, port);
  closers.unshift(() => relay.stop(5000));
  const relayUrl = `http://127.0.0.1:${port}`;

  const hubData = join(root, 'data');
  const { hub, phone, appDir, accounts } = await pairedOverRelay({
    root,
    relayUrl,
    fs,
    hubDir: join(hubData, 'mls'),
  });
  if (!phone) throw new Error('pairing failed');

  // a small simulated volume: free = capacity - what the hub keeps under its data dir
  const CLIP = 24 * 1024;
  const THUMB = 2 * 1024;
  const baseline = await du(hubData);
  const capacity = baseline + 400 * 1024;
  const floor = 120 * 1024; // criticalFreeBytes: the floor the disk must stay above
  const stats = async () => ({ totalBytes: capacity, freeBytes: capacity - (await du(hubData)) });
  const backlogMax = 4 * (CLIP + THUMB) + 16 * 1024;

  const hubLog = new MemoryLogger('hub');
  const ledger = await DropLedger.open(hubData, fs, hubLog);
  hub.dropReporter = (phoneId) => ledger.take(phoneId);
  const dropped: string[] = [];
  const late: { retention?: HubRetention } = {};
  const uplink = await createUplink({
    relayUrl,
    credentials: accounts.device,
    stateDir: join(hubData, 'uplink'),
    fs,
    logger: hubLog,
    backoff: { initialMs: 100, maxMs: 500 },
    requestTimeoutMs: 5000,
    backlog: {
      maxBytes: backlogMax,
      onDropped: async (drops) => {
        dropped.push(...drops.map((d) => d.itemId));
        await ledger.record(
          drops.length,
          hub.phones.map((p) => p.phoneId),
        );
        await late.retention?.discard(drops.map((d) => d.itemId));
      },
    },
  });
  closers.unshift(() => uplink.stop());
  const retention = await HubRetention.open({
    root: hubData,
    fs,
    stats,
    logger: hubLog,
    policy: {
      classes: {
        clips: { maxAgeDays: 30 },
        thumbnails: { maxAgeDays: 30 },
        pending: { maxAgeDays: 7 },
      },
      minFreeBytes: 200 * 1024,
      criticalFreeBytes: floor,
    },
    intervalMs: 3_600_000,
    enforceBacklog: () => uplink.enforceBacklog(),
  });
  late.retention = retention;
  const kept = retention;
  // resolved when the hub has recorded a phone acknowledgement (after it answered the heartbeat)
  const ackedIds: string[] = [];
  let allAcked = (): boolean => false;
  let markedDelivered: () => void = () => undefined;
  const deliveredMarked = new Promise<void>((resolve) => {
    markedDelivered = resolve;
  });
  uplink.start();
  const channel = new RelayConfigChannel({
    hub,
    client: new RelayClient({ url: relayUrl, token: accounts.device.token }),
    logger: SILENT,
    stateDir: join(hubData, 'config'),
    fs,
    onAcknowledged: async (ids) => {
      await kept.markDelivered(ids);
      ackedIds.push(...ids);
      if (allAcked()) markedDelivered();
    },
    pollWaitMs: 2000,
    backoff: { initialMs: 100, maxMs: 500 },
  });
  channel.start();
  closers.unshift(() => channel.stop());
  const sealer = sealerFor(hub, retention.sink(uplink));

  // before the outage: one clip goes through
  const sealed: string[] = [];
  const kinds = new Map<string, string>();
  const record = async (kind: 'clip' | 'thumbnail', size: number): Promise<void> => {
    const id = await sealItem(sealer, randomBytes(size), kind);
    sealed.push(id);
    kinds.set(id, kind);
  };
  await record('clip', CLIP);
  await uplink.drained();

  // the outage: the relay process stops; the hub records 10 clips with thumbnails
  await relay.stop(5000);
  const lowest: number[] = [];
  for (let i = 0; i < 10; i++) {
    await record('thumbnail', THUMB);
    await record('clip', CLIP);
    const r = await retention.run(); // what the hub's schedule does between items
    lowest.push(r.freeBytesAfter);
    t.ok(
      uplink.status().queuedBytes <= backlogMax,
      `backlog within its cap after item ${i} (${uplink.status().queuedBytes} <= ${backlogMax})`,
    );
  }
  t.equal(sealed.length, 21, 'the hub kept recording through the outage');
  t.ok(
    lowest.every((f) => f >= floor),
    `the disk stayed above the floor (lowest free ${Math.min(...lowest)} >= ${floor})`,
  );
  t.ok(dropped.length > 0, `the backlog dropped items (${dropped.length})`);
  t.ok(
    dropped.every((id) => kinds.get(id) === 'clip'),
    'the oldest clips went first; every thumbnail was kept',
  );
  t.same(
    dropped,
    sealed.filter((id) => dropped.includes(id)),
    'dropped oldest first',
  );
  t.equal(uplink.status().itemsDropped, dropped.length);
  t.notOk(
    retention.store.items().some((i) => dropped.includes(i.id)),
    'no local copy is kept of a dropped item',
  );

  // the relay returns (same port, same data directory)
  relay = await startRelayProcess(relayDir, port);
  await uplink.drained();

  // the phone: heartbeat, then sync until the hub's answer and every item are in
  const crypto = new E2eeCrypto(phone);
  const store = new ItemStore(appDir, fs);
  const client = new RelayClient({ url: relayUrl, token: accounts.phone.token });
  const syncer = new Syncer({ client, crypto, store, logger: SILENT });
  await client.postUp('config', await crypto.heartbeat());
  const want = sealed.filter((id) => !dropped.includes(id));
  allAcked = () => want.every((id) => ackedIds.includes(id));
  const got = new Map<string, number>();
  const messages: string[] = [];
  for (;;) {
    const r = await syncer.syncOnce();
    for (const s of r.stored) got.set(s.summary.itemId, (got.get(s.summary.itemId) ?? 0) + 1);
    messages.push(...r.messages);
    if (want.every((id) => got.has(id)) && messages.some((m) => m.includes('dropped'))) break;
    await client.list({ waitMs: 2000 });
  }
  t.ok(
    messages.some((m) => m.includes(droppedLine(dropped.length))),
    `the phone was told: "${droppedLine(dropped.length)}"`,
  );
  t.same([...got.keys()].sort(), [...want].sort(), 'everything not dropped arrived');
  t.ok(
    [...got.values()].every((n) => n === 1),
    'nothing arrived twice',
  );
  t.equal(ledger.pending(phone.phoneId), 0, 'the drop count was handed out once');

  // a second heartbeat carries the phone's acknowledgements: local copies become delivered
  await client.postUp('config', await crypto.heartbeat());
  for (;;) {
    const r = await syncer.syncOnce();
    if (r.messages.some((m) => m.startsWith('heartbeat acknowledged'))) {
      t.notOk(
        r.messages.some((m) => m.includes('dropped')),
        'the second ack reports no new drops',
      );
      break;
    }
    await client.list({ waitMs: 2000 });
  }
  await deliveredMarked; // every surviving item acknowledged by the (only) phone
  const items = retention.store.items();
  t.ok(items.length > 0, `local copies kept (${items.length})`);
  t.ok(
    items.every((i) => i.delivered),
    'every local copy is marked delivered once the phone acknowledged it',
  );
});
