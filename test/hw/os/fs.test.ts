import { mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CrashController, DurableFs, SimulatedCrash, pathExists } from '../../../hw/os/fs.js';
import type { CrashMode } from '../../../hw/os/fs.js';
import { run } from '../../../hw/os/run.js';

const OLD = 'old content: complete and valid\n'.repeat(100);
const NEW = 'NEW CONTENT, ALSO COMPLETE\n'.repeat(120);

async function scratch(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'vigil-fs-'));
}

t.test('writeFileAtomic writes, replaces, and leaves no temp files', async (t) => {
  const dir = await scratch();
  const fs = new DurableFs();
  const f = join(dir, 'sub', 'state.json');
  await fs.writeFileAtomic(f, 'one');
  await fs.writeFileAtomic(f, 'two');
  t.equal(await readFile(f, 'utf8'), 'two');
  t.same(await readdir(join(dir, 'sub')), ['state.json']);
  t.equal(fs.crash.count, 10, 'five numbered points per atomic write');
  t.same(
    fs.crash.trace.slice(0, 5).map((p) => p.label),
    [
      'state.json:before-write',
      'state.json:written',
      'state.json:fsynced',
      'state.json:renamed',
      'state.json:dir-fsynced',
    ],
  );
  t.equal((await fs.readIfExists(join(dir, 'nope'))) ?? 'absent', 'absent');
});

t.test('remove is durable and tolerates absence', async (t) => {
  const dir = await scratch();
  const fs = new DurableFs();
  const f = join(dir, 'x');
  await fs.writeFileAtomic(f, 'x');
  await fs.remove(f);
  await fs.remove(f);
  t.same(await readdir(dir), []);
});

t.test('cleanTemp removes leftovers of interrupted writes', async (t) => {
  const dir = await scratch();
  await writeFile(join(dir, '.state.json.123.1.tmp'), 'partial');
  await writeFile(join(dir, 'state.json'), 'keep');
  const fs = new DurableFs();
  t.equal(await fs.cleanTemp(dir), 1);
  t.same(await readdir(dir), ['state.json']);
});

// Crash at every numbered point of an atomic replace, in both modes: the file
// afterwards is the complete old or the complete new content, never torn/empty.
for (const mode of ['kill', 'power-loss'] as const satisfies readonly CrashMode[]) {
  t.test(`in-process crash at every point (${mode})`, async (t) => {
    const probe = new DurableFs();
    const dir0 = await scratch();
    await probe.writeFileAtomic(join(dir0, 'f'), OLD);
    const before = probe.crash.count;
    await probe.writeFileAtomic(join(dir0, 'f'), NEW);
    const points = probe.crash.count - before;
    t.equal(points, 5);
    let sawOld = 0;
    let sawNew = 0;
    for (let at = 1; at <= points; at++) {
      const dir = await scratch();
      const f = join(dir, 'f');
      await new DurableFs().writeFileAtomic(f, OLD);
      const fs = new DurableFs(new CrashController({ at, mode, delivery: 'throw' }));
      const err = await fs.writeFileAtomic(f, NEW).catch((e: unknown) => e);
      t.ok(err instanceof SimulatedCrash, `point ${at} fired`);
      const after = await readFile(f, 'utf8');
      t.ok(after === OLD || after === NEW, `point ${at}: complete old or new`);
      if (after === OLD) sawOld++;
      else sawNew++;
    }
    t.ok(sawOld > 0, 'early crashes keep the old content');
    if (mode === 'kill') t.ok(sawNew > 0, 'a kill after the rename keeps the new content');
    else t.equal(sawNew, 1, 'power loss keeps the new content only once the directory is synced');
  });
}

t.test('writeFileAtomic re-makes a directory removed after it was ensured', async (t) => {
  const dir = join(await scratch(), 'sub');
  const fs = new DurableFs();
  await fs.writeFileAtomic(join(dir, 'a'), 'one');
  await rm(dir, { recursive: true });
  await fs.writeFileAtomic(join(dir, 'a'), 'two');
  t.equal(await readFile(join(dir, 'a'), 'utf8'), 'two');
  t.same(await readdir(dir), ['a'], 'no temp left');
});

t.test('writeFileAtomic takes parts: one vectored write of them, in order', async (t) => {
  const dir = await scratch();
  const fs = new DurableFs();
  const f = join(dir, 'parts.bin');
  const parts = [
    Buffer.from('head|'),
    Buffer.alloc(0),
    Buffer.alloc(70_000, 7),
    Buffer.from('|tag'),
  ];
  await fs.writeFileAtomic(f, parts);
  t.same(await readFile(f), Buffer.concat(parts));
  // more parts than one writev takes (IOV_MAX 1024)
  const many = Array.from({ length: 2500 }, (_, i) => Buffer.from([i & 0xff]));
  await fs.writeFileAtomic(f, many);
  t.same(await readFile(f), Buffer.concat(many));
  t.same(await readdir(dir), ['parts.bin']);
});

t.test('createAtomic: appended parts become the file at commit, not before', async (t) => {
  const dir = await scratch();
  const fs = new DurableFs();
  const f = join(dir, 'copy.vgi');
  await writeFile(f, OLD);
  const w = await fs.createAtomic(f, 'copy');
  await w.append([Buffer.from('a'), Buffer.from('bc')]);
  await w.append([Buffer.from('def')]);
  t.equal(w.bytes, 6);
  t.equal(await readFile(f, 'utf8'), OLD, 'the target is untouched until commit');
  await w.commit();
  t.equal(await readFile(f, 'utf8'), 'abcdef');
  t.same(await readdir(dir), ['copy.vgi'], 'no temp left');
  t.same(
    fs.crash.trace.map((p) => p.label),
    ['copy:before-write', 'copy:written', 'copy:fsynced', 'copy:renamed', 'copy:dir-fsynced'],
    'the same five crash points as writeFileAtomic',
  );
  await t.rejects(w.append([Buffer.from('x')]), { code: 'ECLOSED' });
  await t.rejects(w.commit(), { code: 'ECLOSED' });

  const d = await fs.createAtomic(join(dir, 'gone.vgi'));
  await d.append([Buffer.alloc(1000)]);
  await d.discard();
  await d.discard();
  t.same(await readdir(dir), ['copy.vgi'], 'a discarded write leaves nothing');
});

for (const mode of ['kill', 'power-loss'] as const satisfies readonly CrashMode[]) {
  t.test(`createAtomic: crash at every point (${mode})`, async (t) => {
    const write = async (fs: DurableFs, f: string): Promise<void> => {
      const w = await fs.createAtomic(f);
      await w.append([Buffer.from(NEW.slice(0, 100))]);
      await w.append([Buffer.from(NEW.slice(100))]);
      await w.commit();
    };
    const probe = new DurableFs();
    await write(probe, join(await scratch(), 'f'));
    const points = probe.crash.count;
    t.equal(points, 5);
    for (let at = 1; at <= points; at++) {
      const dir = await scratch();
      const f = join(dir, 'f');
      await new DurableFs().writeFileAtomic(f, OLD);
      const fs = new DurableFs(new CrashController({ at, mode, delivery: 'throw' }));
      const err = await write(fs, f).catch((e: unknown) => e);
      t.ok(err instanceof SimulatedCrash, `point ${at} fired`);
      const after = await readFile(f, 'utf8');
      t.ok(after === OLD || after === NEW, `point ${at}: complete old or new`);
      await new DurableFs().cleanTemp(dir);
      t.same(await readdir(dir), ['f'], `point ${at}: after cleanTemp only the file is left`);
    }
  });
}

t.test('power loss discards a plain unsynced write of a new file', async (t) => {
  const dir = await scratch();
  const fs = new DurableFs(new CrashController({ at: 2, mode: 'power-loss', delivery: 'throw' }));
  await t.rejects(fs.writeFileAtomic(join(dir, 'fresh'), 'data'), SimulatedCrash);
  t.same(await readdir(dir), [], 'neither the temp file nor the target survive');
});

t.test('crash controller from the environment', async (t) => {
  t.equal(CrashController.fromEnv({}).fired, false);
  t.throws(() => CrashController.fromEnv({ VIGIL_CRASH_AT: 'x' }), { code: 'ECONFIG' });
  const c = new CrashController();
  c.point('a');
  c.point('b');
  t.same(c.trace, [
    { n: 1, label: 'a' },
    { n: 2, label: 'b' },
  ]);
});

// The real thing: a separate process SIGKILLs itself at each point.
t.test('real process kill / power loss at every point', async (t) => {
  const fixture = join(import.meta.dirname, '..', '..', 'fixtures', 'durable-writer.ts');
  const node = process.execPath;
  const tsx = ['--import', 'tsx'];
  for (const mode of ['kill', 'power-loss'] as const) {
    for (let at = 1; at <= 5; at++) {
      const dir = await scratch();
      const f = join(dir, 'f');
      await writeFile(f, OLD);
      const err = await run(node, [...tsx, fixture, f, NEW], {
        env: { ...process.env, VIGIL_CRASH_AT: String(at), VIGIL_CRASH_MODE: mode },
        timeoutMs: 60_000,
      }).catch((e: unknown) => e);
      t.match(err, { signal: 'SIGKILL' }, `${mode}@${at}: the process died`);
      const after = await readFile(f, 'utf8');
      t.ok(after === OLD || after === NEW, `${mode}@${at}: complete old or new`);
    }
  }
  const ok = await run(node, [...tsx, fixture, join(await scratch(), 'g'), NEW], {
    timeoutMs: 60_000,
  });
  t.match(ok.stdout.toString(), /points=5/);
});

t.test('pathExists: files and directories yes; missing paths and dangling links no', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-exists-'));
  await writeFile(join(dir, 'f'), 'x');
  await symlink(join(dir, 'nowhere'), join(dir, 'dangling'));
  t.equal(await pathExists(join(dir, 'f')), true);
  t.equal(await pathExists(dir), true);
  t.equal(await pathExists(join(dir, 'missing')), false);
  t.equal(await pathExists(join(dir, 'dangling')), false);
});

t.test('append adds at the end, creates the file, and passes three crash points', async (t) => {
  const dir = await scratch();
  const fs = new DurableFs();
  const f = join(dir, 'sub', 'log');
  await fs.append(f, 'one\n', 'log');
  await fs.append(f, [Buffer.from('two'), Buffer.from('\n')], 'log');
  t.equal(await readFile(f, 'utf8'), 'one\ntwo\n');
  t.same(await readdir(join(dir, 'sub')), ['log'], 'no temp files');
  t.same(
    fs.crash.trace.slice(0, 3).map((p) => p.label),
    ['log:before-append', 'log:appended', 'log:append-synced'],
  );
  t.equal(fs.crash.count, 6);
});

// Crash at every point of an append, in both modes: the file is the old content or the old
// content followed by the whole append; a power cut keeps the append only once it was synced.
for (const mode of ['kill', 'power-loss'] as const satisfies readonly CrashMode[]) {
  for (const fresh of [false, true]) {
    t.test(
      `append: crash at every point (${mode}, ${fresh ? 'new file' : 'existing'})`,
      async (t) => {
        let sawNew = 0;
        for (let at = 1; at <= 3; at++) {
          const dir = await scratch();
          const f = join(dir, 'log');
          if (!fresh) await new DurableFs().writeFileAtomic(f, OLD);
          const fs = new DurableFs(new CrashController({ at, mode, delivery: 'throw' }));
          const err = await fs.append(f, NEW).catch((e: unknown) => e);
          t.ok(err instanceof SimulatedCrash, `point ${at} fired`);
          const old = fresh ? '' : OLD;
          const after = (await fs.readIfExists(f))?.toString('utf8') ?? '';
          t.ok(
            after === old || after === old + NEW,
            `point ${at}: old, or old and the whole append`,
          );
          if (after === old + NEW) sawNew++;
        }
        t.equal(sawNew, mode === 'kill' ? 2 : 1, 'a power cut keeps only a synced append');
      },
    );
  }
}
