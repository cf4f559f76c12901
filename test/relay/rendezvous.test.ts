import t from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { RendezvousBook } from '../../relay/rendezvous.js';
import { FsRecordStore } from '../../relay/store.js';
import { tempDir } from './fixtures.js';

const tok = (n: number): string => `pairing-token-${String(n).padStart(10, '0')}`;

t.test('an offer of a token in use looks fresh, shadows it, and never takes it', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  let now = 1000;
  const records = new FsRecordStore(dir, new DurableFs());
  const book = new RendezvousBook(records, () => now, { defaultTtlMs: 60_000, maxPerDevice: 4 });
  const a = await book.offer('dev-a', tok(1), undefined);
  const b = await book.offer('dev-b', tok(1), undefined);
  t.same(a, { expiresAt: 61_000, inUse: false });
  t.same(b, { expiresAt: 61_000, inUse: true }, 'same answer but for the flag the server keeps');
  t.equal((await records.loadAll('rendezvous')).length, 2, 'the shadow is written like an offer');
  t.equal(await book.find(tok(1)), 'dev-a', 'the first offer stands');
  t.same(await book.offer('dev-a', tok(1), 5000), { expiresAt: 6000, inUse: false }, 'renewal');
  // a reload keeps both apart
  const again = new RendezvousBook(records, () => now, { defaultTtlMs: 60_000, maxPerDevice: 4 });
  await again.load();
  t.equal(await again.find(tok(1)), 'dev-a');
  t.equal(again.offersOf('dev-b'), 1);
  await again.consume(tok(1));
  t.equal(await again.find(tok(1)), undefined, 'single use');
  now += 100_000;
  await again.load();
  t.equal(await again.find(tok(1)), undefined);
});

t.test('a device holds at most N offers: a new one replaces the one expiring first', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  let now = 0;
  const records = new FsRecordStore(dir, new DurableFs());
  const book = new RendezvousBook(records, () => now, { defaultTtlMs: 60_000, maxPerDevice: 3 });
  for (let i = 0; i < 10; i++) {
    now += 10;
    await book.offer('dev-a', tok(i), undefined);
  }
  t.equal(book.offersOf('dev-a'), 3);
  t.equal((await records.loadAll('rendezvous')).length, 3, '3 records, not 10');
  t.equal(await book.find(tok(6)), undefined, 'older offers were replaced');
  t.equal(await book.find(tok(9)), 'dev-a');
  await book.offer('dev-b', tok(20), undefined);
  t.equal(book.offersOf('dev-b'), 1, 'per device');
  await book.offer('dev-a', tok(9), undefined);
  t.equal(book.offersOf('dev-a'), 3, 'renewing an offer takes no extra room');
  t.equal(await book.find(tok(8)), 'dev-a');
});
