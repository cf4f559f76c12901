import t from 'tap';
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { DurableFs } from '../../../hw/os/fs.js';
import { MemoryLogger, SILENT } from '../../../base/logger.js';
import { createUplink } from '../../../firmware/uplink/uplink.js';
import { RelayClient } from '../../../protocol/relay-client.js';
import { startRelay } from '../../../relay/server.js';
import { relayWith, tempDir } from '../../relay/fixtures.js';

/** How long the relay stays away in the outage test (the minute, shortened for CI). */
const OUTAGE_MS = Number(process.env.VIGIL_TEST_OUTAGE_MS ?? 1500);

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 120_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An uplink (queue in a temp dir) sending to a fresh relay with one paired phone; torn down with `t`. */
async function uplinkToRelay(t: Test) {
  const { dir, cleanup } = await tempDir();
  const { relay, device, phones } = await relayWith(`${dir}/relay`, 1);
  const up = await createUplink({
    relayUrl: relay.url,
    credentials: { deviceId: device.id, token: device.token },
    stateDir: `${dir}/q`,
    fs: new DurableFs(),
    logger: SILENT,
  });
  t.teardown(async () => {
    await up.stop();
    await relay.close();
    await cleanup();
  });
  return { up, phones };
}

t.test('items reach the phone in order, byte for byte', async (t) => {
  const { up, phones } = await uplinkToRelay(t);
  up.start();
  const a = [randomBytes(300), randomBytes(200), randomBytes(10)];
  const th = randomBytes(50);
  await up.append('clip-aaaa', 'clip', a[0]!, false);
  await up.append('thumb-aaaa', 'thumbnail', th, true);
  await up.append('clip-aaaa', 'clip', a[1]!, false);
  await up.append('clip-aaaa', 'clip', a[2]!, true);
  await up.drained();
  const list = (await phones[0]!.client.list({})).items;
  t.same(
    list.map((i) => [i.itemId, i.group, i.kind, i.complete]),
    [
      ['clip-aaaa', 'motion', 'clip', true],
      ['thumb-aaaa', 'thumbnail', 'thumbnail', true],
    ],
  );
  t.same(await phones[0]!.client.readAll(list[0]!.seq), Buffer.concat(a));
  t.same(await phones[0]!.client.readAll(list[1]!.seq), th);
  t.equal(up.status().sentSegments, 4);
  t.equal(up.status().queuedSegments, 0);
});

t.test(
  'appendParts: a GOP of records is one queued file, byte for byte; live records stay records',
  async (t) => {
    const { up, phones } = await uplinkToRelay(t);
    const rec = (n: number): Buffer[] => [randomBytes(9), randomBytes(n), randomBytes(16)];
    const header = randomBytes(200);
    const gop = [rec(60_000), rec(60_000), rec(1000)];
    const end = randomBytes(40);
    await up.append('clip-parts', 'clip', header, false);
    await up.appendParts?.('clip-parts', 'clip', gop, false);
    await up.appendParts?.('clip-parts', 'clip', [], false);
    await up.append('clip-parts', 'clip', end, true);
    t.equal(up.status().queuedSegments, 3, 'header, the GOP as one file, end record');
    // live: each record is its own live record (index order), joined from its parts
    await up.append('live-parts', 'live', Buffer.from('header'), false);
    await up.appendParts?.('live-parts', 'live', [rec(10), rec(20)], false);
    await up.appendParts?.('live-parts', 'live', [[Buffer.from('en'), Buffer.from('d')]], true);
    up.start();
    await up.drained();
    await until('live records sent', () => up.status().liveSent === 4);
    const phone = phones[0]!.client;
    const list = (await phone.list({})).items;
    t.same(
      list.map((i) => [i.itemId, i.complete]),
      [['clip-parts', true]],
    );
    t.same(await phone.readAll(list[0]!.seq), Buffer.concat([header, ...gop.flat(), end]));
    const info = await phone.liveInfo();
    t.equal(info.next, 4, 'four live records: header, two records, end');
    t.equal(info.complete, true, 'the last record of the final call ends the live item');
  },
);

t.test(
  `relay away for ${OUTAGE_MS} ms in the middle of an upload: nothing lost, no duplicates, oldest first`,
  async (t) => {
    const { dir, cleanup } = await tempDir();
    const first = await relayWith(`${dir}/relay`, 1, {}, 'dev-outage');
    const port = first.relay.port;
    const logger = new MemoryLogger('hub');
    const up = await createUplink({
      relayUrl: first.relay.url,
      credentials: { deviceId: first.device.id, token: first.device.token },
      stateDir: `${dir}/q`,
      fs: new DurableFs(),
      logger,
      backoff: { initialMs: 50, maxMs: 400 },
      requestTimeoutMs: 2000,
    });
    let relay = first.relay;
    t.teardown(async () => {
      await up.stop();
      await relay.close();
      await cleanup();
    });
    up.start();
    const items = new Map<string, Buffer[]>();
    const push = async (id: string, b: Buffer, final: boolean): Promise<void> => {
      items.set(id, [...(items.get(id) ?? []), b]);
      await up.append(id, 'clip', b, final);
    };
    await push('clip-0001', randomBytes(4000), false);
    await push('clip-0001', randomBytes(4000), false);
    await up.drained();
    await relay.close(); // the outage begins mid-item
    const outageStart = Date.now();
    await push('clip-0001', randomBytes(4000), true);
    for (let i = 2; i <= 6; i++) {
      await push(`clip-000${i}`, randomBytes(3000), false);
      await push(`clip-000${i}`, randomBytes(1000), true);
    }
    await until('the uplink to notice the outage', () => up.status().state === 'backoff');
    t.ok(up.status().queuedSegments >= 11, 'backlog held on the hub');
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - outageStart))));
    relay = await startRelay({ dataDir: `${dir}/relay`, logger: SILENT, port });
    await up.drained();
    const phone = new RelayClient({ url: relay.url, token: first.phones[0]!.token });
    const list = (await phone.list({})).items;
    t.same(
      list.map((i) => i.itemId),
      ['clip-0001', 'clip-0002', 'clip-0003', 'clip-0004', 'clip-0005', 'clip-0006'],
      'every item once, in recording order',
    );
    for (const it of list)
      t.same(
        await phone.readAll(it.seq),
        Buffer.concat(items.get(it.itemId)!),
        `${it.itemId} intact`,
      );
    t.ok(
      logger.lines.some((l) => l.includes('upload failed; retrying')),
      'retries were logged',
    );
  },
);

t.test('a segment sent before a hub crash (but not yet removed) is not duplicated', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device, phones } = await relayWith(`${dir}/relay`, 1);
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const fs = new DurableFs();
  const opts = {
    relayUrl: relay.url,
    credentials: { deviceId: device.id, token: device.token },
    stateDir: `${dir}/q`,
    fs,
    logger: SILENT,
  };
  const a = randomBytes(1000);
  const b = randomBytes(1000);
  const before = await createUplink(opts);
  await before.append('clip-crash', 'clip', a, false);
  await before.append('clip-crash', 'clip', b, true);
  // The "crash": the first segment reached the relay, the process died before removing it;
  // and half of the second one too (an interrupted request the relay had accepted).
  await device.client.append(
    'clip-crash',
    { group: 'motion', kind: 'clip', offset: 0, final: false },
    a,
  );
  await device.client.append(
    'clip-crash',
    { group: 'motion', kind: 'clip', offset: 1000, final: false },
    b.subarray(0, 400),
  );
  const after = await createUplink(opts); // a new process over the same queue directory
  t.equal(after.status().queuedSegments, 2, 'the queue survived the restart');
  after.start();
  await after.drained();
  await after.stop();
  const list = (await phones[0]!.client.list({})).items;
  t.equal(list.length, 1);
  t.same(await phones[0]!.client.readAll(list[0]!.seq), Buffer.concat([a, b]));
});

t.test('live back-pressure drops frames, never clips, headers or end records', async (t) => {
  const { dir, cleanup } = await tempDir();
  const first = await relayWith(`${dir}/relay`, 1);
  const port = first.relay.port;
  const up = await createUplink({
    relayUrl: first.relay.url,
    credentials: { deviceId: first.device.id, token: first.device.token },
    stateDir: `${dir}/q`,
    fs: new DurableFs(),
    logger: SILENT,
    backoff: { initialMs: 20, maxMs: 100 },
    liveQueueBytes: 10_000,
    requestTimeoutMs: 2000,
  });
  let relay = first.relay;
  t.teardown(async () => {
    await up.stop();
    await relay.close();
    await cleanup();
  });
  await relay.close();
  up.start();
  await up.append('live-0001', 'live', Buffer.from('header'), false);
  for (let i = 0; i < 50; i++) await up.append('live-0001', 'live', randomBytes(1000), false);
  await up.append('clip-live', 'clip', randomBytes(5000), true);
  await up.append('live-0001', 'live', Buffer.from('end'), true);
  const st = up.status();
  t.ok(st.liveDropped >= 40, `frames dropped under back-pressure (${st.liveDropped})`);
  t.ok(st.liveQueued <= 12);
  relay = await startRelay({ dataDir: `${dir}/relay`, logger: SILENT, port });
  await up.drained();
  await until('live queue to drain', () => up.status().liveQueued === 0);
  const phone = new RelayClient({ url: relay.url, token: first.phones[0]!.token });
  const h = await phone.readLive({ waitMs: 2000 });
  t.equal(h?.index, 0);
  t.equal(h?.data.toString(), 'header');
  const info = await phone.liveInfo();
  t.equal(info.complete, true, 'end record delivered');
  t.equal(info.next, 52);
  t.same(
    (await phone.list({})).items.map((i) => i.itemId),
    ['clip-live'],
    'the clip was never dropped',
  );
});

t.test('an item the relay refuses is dropped and the queue moves on', async (t) => {
  const { dir, cleanup } = await tempDir();
  const { relay, device, phones } = await relayWith(`${dir}/relay`, 1, {
    limits: { maxItemBytes: 2000 },
  });
  const logger = new MemoryLogger('hub');
  const up = await createUplink({
    relayUrl: relay.url,
    credentials: { deviceId: device.id, token: device.token },
    stateDir: `${dir}/q`,
    fs: new DurableFs(),
    logger,
  });
  t.teardown(async () => {
    await up.stop();
    await relay.close();
    await cleanup();
  });
  up.start();
  await up.append('too-big', 'clip', randomBytes(1500), false);
  await up.append('too-big', 'clip', randomBytes(1500), true);
  await up.append('fine-item', 'clip', randomBytes(100), true);
  await up.drained();
  t.equal(up.status().itemsRejected, 1);
  const list = (await phones[0]!.client.list({})).items;
  t.same(
    list.map((i) => [i.itemId, i.complete]),
    [
      ['too-big', false],
      ['fine-item', true],
    ],
  );
  t.ok(logger.lines.some((l) => l.includes('relay refused an item')));
});

t.test('a bounded backlog drops the oldest finished clips and reports them', async (t) => {
  const { dir, cleanup } = await tempDir();
  const first = await relayWith(`${dir}/relay`, 1);
  const port = first.relay.port;
  await first.relay.close(); // the relay is away for the whole filling phase
  const reported: string[] = [];
  const up = await createUplink({
    relayUrl: first.relay.url,
    credentials: { deviceId: first.device.id, token: first.device.token },
    stateDir: `${dir}/q`,
    fs: new DurableFs(),
    logger: SILENT,
    backoff: { initialMs: 20, maxMs: 100 },
    requestTimeoutMs: 2000,
    backlog: {
      maxBytes: 3500,
      onDropped: (drops) => {
        reported.push(...drops.map((d) => d.itemId));
      },
    },
  });
  let relay = first.relay;
  t.teardown(async () => {
    await up.stop();
    await relay.close();
    await cleanup();
  });
  // not started: nothing is in flight, the order is deterministic
  await up.append('thumb-1', 'thumbnail', randomBytes(200), true);
  await up.append('clip-1', 'clip', randomBytes(1000), true);
  await up.append('clip-2', 'clip', randomBytes(500), false);
  await up.append('clip-2', 'clip', randomBytes(500), true);
  await up.append('clip-3', 'clip', randomBytes(1000), false); // still recording
  t.same(reported, [], 'under the cap nothing goes');
  await up.append('clip-3', 'clip', randomBytes(1000), true);
  t.same(reported, ['clip-1'], 'past the cap: the oldest finished clip, whole');
  await up.append('clip-4', 'clip', randomBytes(1000), true);
  t.same(reported, ['clip-1', 'clip-2']);
  t.ok(up.status().queuedBytes <= 3500, `within the cap (${up.status().queuedBytes})`);
  t.equal(up.status().itemsDropped, 2);
  t.same(await up.enforceBacklog(), [], 'a scheduled pass within bounds drops nothing');

  relay = await startRelay({ dataDir: `${dir}/relay`, logger: SILENT, port });
  up.start();
  await up.drained();
  const phone = new RelayClient({ url: relay.url, token: first.phones[0]!.token });
  const listed = (await phone.list({})).items.map((i) => i.itemId).sort();
  t.same(listed, ['clip-3', 'clip-4', 'thumb-1'], 'everything not dropped arrived');
});

t.test(
  'without a relay account yet: items queue on disk, and go once the account is named',
  async (t) => {
    const { dir, cleanup } = await tempDir();
    const { relay, device, phones } = await relayWith(`${dir}/relay`, 1);
    const up = await createUplink({
      relayUrl: undefined,
      credentials: undefined,
      stateDir: `${dir}/q`,
      fs: new DurableFs(),
      logger: SILENT,
    });
    t.teardown(async () => {
      await up.stop();
      await relay.close();
      await cleanup();
    });
    t.throws(
      () => {
        up.start();
      },
      { code: 'ENOACCOUNT' },
    );
    const clip = randomBytes(400);
    await up.append('clip-bbbb', 'clip', clip, true);
    t.match(
      up.status(),
      { state: 'stopped', queuedSegments: 1 },
      'recorded while the relay is unknown',
    );
    up.connect(relay.url, { deviceId: device.id, token: device.token });
    up.start();
    await up.drained();
    const list = (await phones[0]!.client.list({})).items;
    t.same(
      list.map((i) => i.itemId),
      ['clip-bbbb'],
    );
    t.same(await phones[0]!.client.readAll(list[0]!.seq), clip);
  },
);
