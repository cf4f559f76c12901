import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DurableFs } from '../../../hw/os/fs.js';
import { MemoryLogger } from '../../../base/logger.js';
import { DROP_LEDGER_FILE, DropLedger } from '../../../firmware/uplink/drop-ledger.js';
import { tempDir } from '../../relay/fixtures.js';

t.test('counts per phone, handed out once, kept across a restart', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-ledger-');
  t.teardown(cleanup);
  const fs = new DurableFs();
  const log = new MemoryLogger();
  const l = await DropLedger.open(dir, fs, log);
  await l.record(3, ['a', 'b']);
  await l.record(2, ['a']);
  await l.record(0, ['a']);
  await l.record(4, []);
  t.equal(l.pending('a'), 5);
  t.equal(l.pending('b'), 3);
  const again = await DropLedger.open(dir, fs, log);
  t.equal(again.pending('a'), 5, 'durable');
  t.equal(await again.take('a'), 5);
  t.equal(await again.take('a'), 0, 'only once');
  t.equal((await DropLedger.open(dir, fs, log)).pending('a'), 0, 'the take is durable too');
  t.equal((await DropLedger.open(dir, fs, log)).pending('b'), 3, 'other phones keep theirs');
});

t.test('an unreadable ledger starts empty and says so', async (t) => {
  const { dir, cleanup } = await tempDir('vigil-ledger-');
  t.teardown(cleanup);
  await writeFile(join(dir, DROP_LEDGER_FILE), '{"format":"nope"}');
  const log = new MemoryLogger();
  const l = await DropLedger.open(dir, new DurableFs(), log);
  t.equal(l.pending('a'), 0);
  t.ok(log.lines.some((x) => x.includes('ledger unreadable')));
});
