import * as fsp from 'node:fs/promises';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import type * as FsModule from '../../hw/os/fs.js';
import { HostAppSlots, other, treeDigest } from '../../ota/slots.js';
import type { SlotMarker } from '../../ota/slots.js';
import { makeBundle, tempDir } from './helpers.js';

const marker = (version: string, digest: string): SlotMarker => ({
  format: 'vigil-slot/1',
  version,
  target: `stable/vigil-app-${version}.tar.gz`,
  sha256: 'a'.repeat(64),
  treeDigest: digest,
  installedAt: new Date(0).toISOString(),
});

t.test('install into the inactive slot, trial, commit, drop', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const bundlePath = join(work, 'b.tar.gz');
  await writeFile(bundlePath, await makeBundle(work, '3.0.0', 'healthy'));
  const slots = new HostAppSlots(join(work, 'opt'), new DurableFs());
  let st = await slots.status();
  tt.same(
    st.pointer,
    { format: 'vigil-slots/1', committed: 'a' },
    'default: slot a committed, nothing installed',
  );
  tt.equal(st.markers.a, undefined);
  await tt.rejects(slots.wipe('a'), /refusing to wipe the committed slot/);
  await slots.wipe('b');
  const digest = await slots.unpack('b', bundlePath);
  tt.equal(digest, await treeDigest(slots.dirOf('b')));
  tt.equal(await slots.digest('b'), digest);
  tt.match(await readFile(join(slots.dirOf('b'), 'package.json'), 'utf8'), /3\.0\.0/);
  await tt.rejects(
    slots.beginTrial('b', '3.0.0', new Date()),
    /no complete install/,
    'no marker: never trialled',
  );
  await slots.writeMarker('b', marker('3.0.0', digest));
  await tt.rejects(slots.beginTrial('a', '3.0.0', new Date()), /inactive one/);
  await slots.beginTrial('b', '3.0.0', new Date());
  st = await slots.status();
  tt.equal(st.pointer.trial?.slot, 'b');
  tt.equal(
    (await slots.bootSlot()).slot,
    'a',
    'the launcher keeps running the committed slot during a trial',
  );
  await slots.dropTrial();
  tt.equal((await slots.status()).pointer.trial, undefined);
  await slots.dropTrial();
  await tt.rejects(slots.commit(), /no trial/);
  await slots.beginTrial('b', '3.0.0', new Date());
  await slots.commit();
  const boot = await slots.bootSlot();
  tt.equal(boot.slot, 'b');
  tt.equal(boot.marker?.version, '3.0.0');
  tt.equal(other('b'), 'a');
  tt.equal(await slots.digest('a'), '', 'an absent slot has no digest');
});

t.test('torn markers and pointers', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const dir = join(work, 'opt');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'slot-b.json'), '');
  const slots = new HostAppSlots(dir, new DurableFs());
  tt.equal(
    (await slots.status()).markers.b,
    undefined,
    'an empty marker (power cut) means no install',
  );
  await writeFile(join(dir, 'slot-b.json'), '{"format":"other"}');
  tt.equal((await slots.status()).markers.b, undefined);
  await writeFile(join(dir, 'current'), 'garbage');
  await tt.rejects(slots.status(), /not JSON/);
  await writeFile(join(dir, 'current'), '{"format":"nope"}');
  await tt.rejects(slots.status(), /not a slot pointer/);
});

t.test('tree digest covers content, modes and links', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  await mkdir(join(work, 'd', 'sub'), { recursive: true });
  await writeFile(join(work, 'd', 'sub', 'f'), 'one');
  const d1 = await treeDigest(join(work, 'd'));
  await writeFile(join(work, 'd', 'sub', 'f'), 'two');
  const d2 = await treeDigest(join(work, 'd'));
  tt.not(d1, d2, 'content');
  await symlink('sub/f', join(work, 'd', 'link'));
  const d3 = await treeDigest(join(work, 'd'), { fsync: true });
  tt.not(d2, d3, 'links');
  tt.equal(await treeDigest(join(work, 'd')), d3, 'fsync does not change the digest');
});

t.test('restart trials: pending, launched once, failed with its reason', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const slots = new HostAppSlots(join(work, 'opt'), new DurableFs());
  await tt.rejects(slots.markLaunched(), /no pending trial/);
  await tt.rejects(slots.failTrial('x'), /no trial to fail/);
  await mkdir(slots.dirOf('b'), { recursive: true });
  await slots.writeMarker('b', marker('3.0.0', 'c'.repeat(64)));
  await slots.beginTrial('b', '3.0.0', new Date(0), { from: '2.0.0' });
  tt.match((await slots.status()).pointer.trial, { stage: 'pending', from: '2.0.0' });
  await slots.markLaunched();
  tt.equal((await slots.status()).pointer.trial?.stage, 'launched');
  await tt.rejects(slots.markLaunched(), /no pending trial/, 'one start only');
  await slots.failTrial(`health check failed: ${'x'.repeat(3000)}`);
  const trial = (await slots.status()).pointer.trial;
  tt.equal(trial?.stage, 'failed');
  tt.equal(trial?.reason?.length, 2000, 'the reason is bounded');
  tt.equal((await slots.status()).pointer.committed, 'a', 'committed slot untouched');
});

/**
 * A DurableFs whose next rename onto `target` stops half-way through the atomic
 * write (temp file written and synced, not yet renamed) until released.
 */
async function pausingFs(tt: Test, target: string) {
  let entered!: () => void;
  const atRename = new Promise<void>((r) => (entered = r));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let armed = true;
  const m = await tt.mockImport<typeof FsModule>('../../hw/os/fs.js', {
    'node:fs/promises': {
      ...fsp,
      rename: async (from: string, to: string) => {
        if (armed && basename(to) === target) {
          armed = false;
          entered();
          await released;
        }
        await fsp.rename(from, to);
      },
    },
  });
  return { fs: new m.DurableFs(), atRename, release };
}

t.test('a status read during a pointer write leaves the writer alone', async (tt) => {
  // The hub's agent writes the pointer while someone else (vigil ota status, the
  // launcher of a test, another HostAppSlots) reads it. The reader used to sweep
  // the writer's temp file away: ENOENT at the rename, the commit lost.
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const root = join(work, 'opt');
  const gated = await pausingFs(tt, 'current');
  const writer = new HostAppSlots(root, gated.fs);
  const reader = new HostAppSlots(root, new DurableFs());
  await mkdir(writer.dirOf('b'), { recursive: true });
  await writer.writeMarker('b', marker('3.0.0', 'c'.repeat(64)));
  const begun = writer.beginTrial('b', '3.0.0', new Date(0));
  await gated.atRename;
  tt.match(
    (await readdir(root)).filter((n) => n.endsWith('.tmp')),
    [/^\.current\.\d+\.\d+\.tmp$/],
    'the writer has its temp file in place',
  );
  tt.equal((await reader.status()).pointer.trial, undefined, 'the reader sees the old pointer');
  gated.release();
  await begun;
  tt.equal((await reader.status()).pointer.trial?.version, '3.0.0', 'the write landed');
  tt.same(
    (await readdir(root)).filter((n) => n.endsWith('.tmp')),
    [],
    'nothing left behind',
  );
});

t.test('leftovers of interrupted writes are swept only when asked', async (tt) => {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const root = join(work, 'opt');
  await mkdir(root, { recursive: true });
  await writeFile(join(root, '.current.1.1.tmp'), '{"torn');
  const slots = new HostAppSlots(root, new DurableFs());
  await slots.status();
  tt.same(await readdir(root), ['.current.1.1.tmp'], 'a read changes nothing');
  tt.equal(await slots.cleanLeftovers(), 1);
  tt.same(await readdir(root), []);
});

t.test('pointer updates of one slot set run one at a time', async (tt) => {
  // The trial deadline marks the trial failed while the health check commits it: the
  // second update must see the first, never overwrite it with what it read before.
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const gated = await pausingFs(tt, 'current');
  const slots = new HostAppSlots(join(work, 'opt'), new DurableFs());
  await mkdir(slots.dirOf('b'), { recursive: true });
  await slots.writeMarker('b', marker('3.0.0', 'c'.repeat(64)));
  await slots.beginTrial('b', '3.0.0', new Date(0), { from: '2.0.0' });
  await slots.markLaunched();
  const shared = new HostAppSlots(join(work, 'opt'), gated.fs);
  const failing = shared.failTrial('the deadline passed');
  await gated.atRename;
  const committing = shared.commit();
  gated.release();
  await failing;
  await tt.rejects(committing, /trial already failed/, 'a failed trial is never committed');
  tt.match((await slots.status()).pointer, {
    committed: 'a',
    trial: { stage: 'failed', reason: 'the deadline passed' },
  });
});
