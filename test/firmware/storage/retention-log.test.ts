// The retention index as a snapshot and an append-only log (firmware/storage/retention.ts):
// appends survive a reopen, a torn or corrupt tail is skipped, compaction runs at its bound
// and a crash at any of its steps loses nothing and brings nothing back, v1 indexes load.
import t from 'tap';
import type { Test } from 'tap';
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CrashController, DurableFs, SimulatedCrash } from '../../../hw/os/fs.js';
import type { CrashMode, FileData } from '../../../hw/os/fs.js';
import { MemoryLogger } from '../../../base/logger.js';
import {
  COMPACT_MIN_LOG_BYTES,
  INDEX_FILE,
  LOG_FILE,
  RetentionStore,
} from '../../../firmware/storage/retention.js';
import type { RetainedItem, RetentionClass } from '../../../firmware/storage/retention.js';

const NOW = 1_800_000_000_000;

async function scratch(t: Test): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'vigil-retlog-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return root;
}

function open(
  root: string,
  opts: { fs?: DurableFs; logger?: MemoryLogger; compactMinLogBytes?: number } = {},
): RetentionStore {
  return new RetentionStore({
    root,
    fs: opts.fs ?? new DurableFs(),
    logger: opts.logger ?? new MemoryLogger(),
    now: () => NOW,
    stats: async () => ({ totalBytes: 1e9, freeBytes: 1e9 }),
    ...(opts.compactMinLogBytes === undefined
      ? {}
      : { compactMinLogBytes: opts.compactMinLogBytes }),
  });
}

function item(id: string, cls: RetentionClass = 'clips', delivered = false): RetainedItem {
  return { id, cls, path: `${cls}/${id}.bin`, bytes: 3, createdAt: NOW - id.length, delivered };
}

/** Write the item's file (as the pipeline does before `add`). */
async function file(root: string, it: RetainedItem): Promise<void> {
  await mkdir(dirname(join(root, it.path)), { recursive: true });
  await writeFile(join(root, it.path), 'abc');
}

async function put(root: string, s: RetentionStore, it: RetainedItem): Promise<void> {
  await file(root, it);
  await s.add(it);
}

/** id -> delivered, sorted by id. */
function state(s: RetentionStore): [string, boolean][] {
  return s
    .items()
    .map((i): [string, boolean] => [i.id, i.delivered])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

async function reopened(root: string, logger = new MemoryLogger()): Promise<RetentionStore> {
  const s = open(root, { logger });
  await s.load();
  return s;
}

t.test('changes are appended to the log and survive a reopen', async (t) => {
  const root = await scratch(t);
  const s = open(root);
  await s.load();
  await put(root, s, item('a'));
  const snapshot = await readFile(join(root, INDEX_FILE));
  await put(root, s, item('b'));
  await put(root, s, item('c', 'thumbnails'));
  t.equal(await s.markDelivered('a'), true);
  t.equal(await s.discard('c'), true);
  t.same(await readFile(join(root, INDEX_FILE)), snapshot, 'the snapshot is not rewritten');
  const log = await readFile(join(root, LOG_FILE), 'utf8');
  t.equal(log.split('\n').length - 1, 5, 'a header and four records (the first add compacted)');
  t.match(log, /^\{"format":"vigil-retention-log","version":1,"generation":"[0-9a-f]{16}"\}\t/);
  const logger = new MemoryLogger();
  const again = await reopened(root, logger);
  t.same(state(again), [
    ['a', true],
    ['b', false],
  ]);
  t.equal(again.reconciled, false, 'the index is in step with the tree');
  t.same(logger.lines, [], 'no warnings');
});

t.test('concurrent changes share one append', async (t) => {
  const root = await scratch(t);
  const fs = new DurableFs();
  const s = open(root, { fs });
  await s.load();
  await put(root, s, item('first'));
  const ids = Array.from({ length: 10 }, (_, i) => `c${i}`);
  for (const id of ids) await file(root, item(id));
  const before = fs.crash.trace.length;
  await Promise.all(ids.map((id) => s.add(item(id))));
  const appends = fs.crash.trace
    .slice(before)
    .filter((p) => p.label === 'retention-log:before-append').length;
  t.ok(appends >= 1 && appends <= 2, `ten adds in ${appends} appends`);
  t.equal((await reopened(root)).items().length, 11);
});

t.test('a torn tail is skipped with a warning; the next change compacts', async (t) => {
  const root = await scratch(t);
  const s = open(root);
  await s.load();
  await put(root, s, item('a'));
  await put(root, s, item('b'));
  await s.markDelivered('a');
  // A power cut in the middle of the next append: part of a record, no newline.
  await appendFile(join(root, LOG_FILE), '{"op":"delivered","id":"b"');
  const logger = new MemoryLogger();
  const again = await reopened(root, logger);
  t.same(state(again), [
    ['a', true],
    ['b', false],
  ]);
  t.equal(logger.lines.filter((l) => l.includes('torn or corrupt')).length, 1, 'one warning line');
  t.match(logger.lines[0] ?? '', /"records":1/);
  await put(root, again, item('c'));
  const log = await readFile(join(root, LOG_FILE), 'utf8');
  t.notMatch(log, /"id":"b"\}?$/m, 'nothing appended after the torn bytes: the log is fresh');
  const l2 = new MemoryLogger();
  const third = await reopened(root, l2);
  t.same(state(third), [
    ['a', true],
    ['b', false],
    ['c', false],
  ]);
  t.same(l2.lines, [], 'clean after the compaction');
});

t.test('a corrupt record (bad CRC) is skipped, the others kept', async (t) => {
  const root = await scratch(t);
  const s = open(root);
  await s.load();
  await put(root, s, item('a'));
  await put(root, s, item('b'));
  await put(root, s, item('c'));
  const p = join(root, LOG_FILE);
  const lines = (await readFile(p, 'utf8')).split('\n');
  // The last whole record is add c: flip its delivered flag without fixing the CRC.
  lines[lines.length - 2] = (lines[lines.length - 2] ?? '').replace(
    '"delivered":false',
    '"delivered":true ',
  );
  await writeFile(p, lines.join('\n'));
  const logger = new MemoryLogger();
  const again = await reopened(root, logger);
  t.same(
    state(again),
    [
      ['a', false],
      ['adopted:clips/c.bin', false],
      ['b', false],
    ],
    'c is adopted from the tree, undelivered: never the corrupt flag',
  );
  t.ok(logger.lines.some((l) => l.includes('torn or corrupt')));
});

t.test('compaction at the bound: a new snapshot, a fresh log', async (t) => {
  const root = await scratch(t);
  const fs = new DurableFs();
  const s = open(root, { fs, compactMinLogBytes: 2048 });
  await s.load();
  let compactions = 0;
  for (let i = 0; i < 60; i++) {
    const before = fs.crash.trace.length;
    await put(root, s, item(`item-${String(i).padStart(3, '0')}`));
    if (i % 2 === 0) await s.markDelivered(`item-${String(i).padStart(3, '0')}`);
    if (fs.crash.trace.slice(before).some((p) => p.label === 'retention-index:renamed'))
      compactions++;
    const log = (await stat(join(root, LOG_FILE))).size;
    const snap = (await stat(join(root, INDEX_FILE))).size;
    t.ok(log <= Math.max(snap, 2048), `after ${i + 1}: log ${log} within max(snapshot, 2048)`);
  }
  // The first add compacts (no log yet); then the log doubles the snapshot each time.
  t.ok(compactions >= 3 && compactions <= 10, `${compactions} compactions for 60 items`);
  const snap = JSON.parse(await readFile(join(root, INDEX_FILE), 'utf8')) as {
    version: number;
    generation: string;
    items: RetainedItem[];
  };
  t.equal(snap.version, 1, 'the snapshot keeps the v1 format (an older hub reads it)');
  t.match(snap.generation, /^[0-9a-f]{16}$/);
  const again = await reopened(root);
  t.equal(again.items().length, 60);
  t.equal(again.items().filter((i) => i.delivered).length, 30);
  t.equal(COMPACT_MIN_LOG_BYTES, 64 * 1024);
});

t.test('a log of another generation is ignored (an older hub rewrote the snapshot)', async (t) => {
  const root = await scratch(t);
  const s = open(root);
  await s.load();
  await put(root, s, item('a'));
  await s.markDelivered('a');
  // What a hub before the log writes: v1, no generation, delivered not yet known to it.
  await writeFile(
    join(root, INDEX_FILE),
    JSON.stringify({ format: 'vigil-retention-index', version: 1, items: [item('a')] }) + '\n',
  );
  const again = await reopened(root);
  t.same(state(again), [['a', false]], "the log's records are not applied to another snapshot");
  // The same with a generation: a snapshot whose log was not yet started (a compaction cut
  // between its two writes) does not take the previous generation's records.
  await writeFile(
    join(root, INDEX_FILE),
    JSON.stringify({
      format: 'vigil-retention-index',
      version: 1,
      generation: '0123456789abcdef',
      items: [item('a')],
    }) + '\n',
  );
  t.same(state(await reopened(root)), [['a', false]], 'generations differ: the log is ignored');
  await put(root, again, item('b'));
  t.same(state(await reopened(root)), [
    ['a', false],
    ['b', false],
  ]);
});

t.test('a v1 index loads and continues in the new format', async (t) => {
  const root = await scratch(t);
  const a = item('a', 'clips', true);
  const b = item('bb', 'thumbnails');
  await file(root, a);
  await file(root, b);
  // Exactly what the whole-file index wrote.
  await writeFile(
    join(root, INDEX_FILE),
    JSON.stringify({ format: 'vigil-retention-index', version: 1, items: [b, a] }) + '\n',
  );
  const logger = new MemoryLogger();
  const s = await reopened(root, logger);
  t.same(state(s), [
    ['a', true],
    ['bb', false],
  ]);
  t.equal(s.reconciled, false);
  t.same(logger.lines, []);
  await put(root, s, item('c'));
  await s.markDelivered('bb');
  const snap = JSON.parse(await readFile(join(root, INDEX_FILE), 'utf8')) as {
    generation?: string;
  };
  t.match(snap.generation, /^[0-9a-f]{16}$/, 'the first change wrote a snapshot with a log');
  t.same(state(await reopened(root)), [
    ['a', true],
    ['bb', true],
    ['c', false],
  ]);
});

t.test('a failed append is never appended after: the next change compacts', async (t) => {
  const root = await scratch(t);
  let failNext = false;
  const fs = new (class extends DurableFs {
    override async append(p: string, d: FileData, l?: string): Promise<void> {
      if (!failNext) return super.append(p, d, l);
      failNext = false;
      await appendFile(p, 'partial bytes of a record'); // what a full disk can leave
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    }
  })();
  const s = open(root, { fs });
  await s.load();
  await put(root, s, item('a'));
  failNext = true;
  await t.rejects(put(root, s, item('b')), /ENOSPC/);
  await put(root, s, item('c'));
  const logger = new MemoryLogger();
  const again = await reopened(root, logger);
  t.same(state(again), [
    ['a', false],
    ['b', false],
    ['c', false],
  ]);
  t.same(logger.lines, [], 'the partial bytes went with the old log');
});

t.test('bad input: one-line errors, nothing written', async (t) => {
  const root = await scratch(t);
  const s = open(root);
  await s.load();
  await put(root, s, item('a'));
  const log = await readFile(join(root, LOG_FILE));
  const bad: RetainedItem[] = [
    { ...item('x'), id: '' },
    { ...item('x'), bytes: -1 },
    { ...item('x'), path: 'thumbnails/x.bin' },
    { ...item('x'), path: 'clips/../../etc/passwd' },
  ];
  for (const it of bad) {
    const err = await s.add(it).catch((e: unknown) => e);
    t.match(err, { code: 'EVALIDATION' });
    const msg = err instanceof Error ? err.message : '';
    t.notMatch(msg, /\n/, `one line: ${msg}`);
  }
  t.match(await s.add({ ...item('x'), id: '' }).catch((e: unknown) => e), {
    message: /^invalid retention item: id: /,
  });
  t.same(await readFile(join(root, LOG_FILE)), log, 'the log is untouched');
});

/**
 * The crash scenario: from items a (delivered), b, c, with a bound small enough that the
 * changes below compact (twice): discard a, add d, mark b delivered, add e, f, mark d
 * delivered, add g, discard e, add h.
 */
const SCENARIO: ((root: string, s: RetentionStore) => Promise<unknown>)[] = [
  (_root, s) => s.discard('a'),
  (root, s) => put(root, s, item('d')),
  (_root, s) => s.markDelivered('b'),
  (root, s) => put(root, s, item('e', 'thumbnails')),
  (root, s) => put(root, s, item('f')),
  (_root, s) => s.markDelivered('d'),
  (root, s) => put(root, s, item('g', 'pending')),
  (_root, s) => s.discard('e'),
  (root, s) => put(root, s, item('h')),
];
const BOUND = 400;

async function before(t: Test): Promise<string> {
  const root = await scratch(t);
  const s = open(root, { compactMinLogBytes: BOUND });
  await s.load();
  await put(root, s, item('a', 'clips', true));
  await put(root, s, item('b'));
  await put(root, s, item('c', 'pending'));
  return root;
}

for (const mode of ['kill', 'power-loss'] as const satisfies readonly CrashMode[]) {
  t.test(`a crash at every point of appends and compactions (${mode})`, async (t) => {
    const probeRoot = await before(t);
    const probe = new DurableFs();
    const ps = open(probeRoot, { fs: probe, compactMinLogBytes: BOUND });
    await ps.load();
    for (const step of SCENARIO) await step(probeRoot, ps);
    const points = probe.crash.count;
    const labels = probe.crash.trace.map((p) => p.label);
    t.ok(
      labels.filter((l) => l === 'retention-index:renamed').length >= 2,
      'the scenario compacts at least twice',
    );
    t.ok(labels.includes('retention-log:append-synced'), 'and appends');
    for (let at = 1; at <= points; at++) {
      const root = await before(t);
      const fs = new DurableFs(new CrashController({ at, mode, delivery: 'throw' }));
      const s = open(root, { fs, compactMinLogBytes: BOUND });
      await s.load();
      let done = 0;
      let crashed: unknown;
      for (const step of SCENARIO) {
        try {
          await step(root, s);
          done++;
        } catch (e) {
          crashed = e;
          break;
        }
      }
      const label = probe.crash.trace[at - 1]?.label ?? '';
      t.ok(crashed instanceof SimulatedCrash, `point ${at} (${label}) fired`);
      const logger = new MemoryLogger();
      const after = new Map((await reopened(root, logger)).items().map((i) => [i.id, i]));
      const where = `crash at ${at} (${label}) after ${done} changes`;
      // Returned changes are durable; nothing deleted comes back; nothing else is lost.
      if (done >= 1) t.notOk(after.has('a'), `${where}: discarded a stays gone`);
      else t.ok(after.has('a') ? after.get('a')?.delivered === true : true, where);
      t.ok(after.has('b') && after.has('c'), `${where}: b and c kept`);
      if (done >= 2) t.ok(after.has('d'), `${where}: d kept`);
      if (done >= 3) t.equal(after.get('b')?.delivered, true, `${where}: b delivered`);
      if (done >= 4 && done < 7) t.ok(after.has('e'), `${where}: e kept`); // (7: being discarded)
      if (done >= 8) t.notOk(after.has('e'), `${where}: discarded e stays gone`);
      if (done >= 5) t.ok(after.has('f'), `${where}: f kept`);
      if (done >= 6) t.equal(after.get('d')?.delivered, true, `${where}: d delivered`);
      if (done >= 7) t.ok(after.has('g'), `${where}: g kept`);
      t.equal(after.get('c')?.delivered, false, `${where}: c never delivered`);
      // Anything present is either a known id or a file the tree still has (adopted).
      for (const id of after.keys())
        t.ok('abcdefgh'.includes(id) || id.startsWith('adopted:'), `${where}: ${id} expected`);
      const again = await reopened(root);
      const first = [...after.values()]
        .map((i): [string, boolean] => [i.id, i.delivered])
        .sort((x, y) => (x[0] < y[0] ? -1 : 1));
      t.same(state(again), first, `${where}: a second reopen finds the same`);
    }
  });
}
