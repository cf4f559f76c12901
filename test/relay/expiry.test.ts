import t from 'tap';
import { MemoryLogger, SILENT } from '../../base/logger.js';
import { startRelay } from '../../relay/server.js';
import { startExpiry } from '../../relay/expiry.js';
import { RelayClient } from '../../protocol/relay-client.js';
import { pairPhone, tempDir } from './fixtures.js';

const DAY = 86_400_000;

t.test('items past the age limit are deleted in every account, younger ones stay', async (t) => {
  const { dir, cleanup } = await tempDir();
  let now = 1_800_000_000_000;
  const relay = await startRelay({ dataDir: dir, logger: SILENT, now: () => now });
  t.teardown(async () => {
    await relay.close();
    await cleanup();
  });
  const anon = new RelayClient({ url: relay.url });
  const devs = [];
  for (const id of ['dev-aaaa', 'dev-bbbb']) {
    const token = (await anon.registerDevice(id)).token;
    const device = { client: anon.withToken(token), id, token };
    devs.push({ device, phone: await pairPhone(relay, device) });
  }
  const [a, b] = devs as [(typeof devs)[0], (typeof devs)[0]];
  await a.device.client.append(
    'old-a',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    Buffer.alloc(100),
  );
  await b.device.client.append(
    'old-b',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    Buffer.alloc(100),
  );
  now += 20 * DAY;
  await a.device.client.append(
    'new-a',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    Buffer.alloc(100),
  );

  const log = new MemoryLogger();
  const ex = startExpiry(relay.core, { maxAgeMs: 30 * DAY, intervalMs: 3_600_000, logger: log });
  t.teardown(() => ex.stop());
  t.equal(await ex.runOnce(), 0, 'nothing is 30 days old yet');
  now += 15 * DAY; // old-*: 35 days, new-a: 15 days
  t.equal(await ex.runOnce(), 2);
  t.same(
    (await a.phone.client.list({})).items.map((i) => i.itemId),
    ['new-a'],
  );
  t.same(
    (await b.phone.client.list({})).items.map((i) => i.itemId),
    [],
  );
  t.ok(log.lines.some((l) => l.includes('past the age limit') && l.includes('dev-bbbb')));
  // a late retry of the same bytes is answered, not stored again
  await a.device.client.append(
    'old-a',
    { group: 'motion', kind: 'clip', offset: 0, final: true },
    Buffer.alloc(100),
  );
  t.same(
    (await a.phone.client.list({})).items.map((i) => i.itemId),
    ['new-a'],
    'a late retry cannot bring an expired item back',
  );
});
