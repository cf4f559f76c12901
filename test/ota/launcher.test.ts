// The launcher: which tree a hub start runs, the one-shot trial start, and the
// in-process hand-over to the chosen tree's entry point.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { DurableFs } from '../../hw/os/fs.js';
import { ENV_SLOT, ENV_TRIAL, launch, planLaunch } from '../../ota/launcher.js';
import { HostAppSlots } from '../../ota/slots.js';
import type { SlotName } from '../../ota/slots.js';
import { tempDir } from './helpers.js';

/** A tree whose entry records how it was started (in this process: globalThis). */
async function tree(dir: string, tag: string): Promise<void> {
  await mkdir(join(dir, 'dist', 'bin'), { recursive: true });
  await writeFile(
    join(dir, 'dist', 'bin', 'vigil.js'),
    `globalThis.launched = { tag: ${JSON.stringify(tag)}, argv: process.argv.slice(2), trial: process.env.${ENV_TRIAL}, slot: process.env.${ENV_SLOT} };\n`,
  );
}

async function install(slots: HostAppSlots, slot: SlotName, version: string): Promise<void> {
  await tree(slots.dirOf(slot), `${slot}-${version}`);
  await slots.writeMarker(slot, {
    format: 'vigil-slot/1',
    version,
    target: `stable/vigil-app-${version}.tar.gz`,
    sha256: 'a'.repeat(64),
    treeDigest: 'b'.repeat(64),
    installedAt: '2026-11-20T00:00:00Z',
  });
}

async function setup(tt: Test) {
  const work = await tempDir();
  tt.teardown(() => rm(work, { recursive: true, force: true }));
  const fs = new DurableFs();
  const slots = new HostAppSlots(join(work, 'opt', 'vigil'), fs);
  const base = join(work, 'base');
  await tree(base, 'base');
  return { work, fs, slots, base };
}

t.test('plans: base, committed, the one trial start, then back to committed', async (tt) => {
  const { slots, base } = await setup(tt);
  tt.match(await planLaunch(slots, base), { slot: 'base', dir: base, trial: false });
  await install(slots, 'a', '1.0.0');
  tt.match(await planLaunch(slots, base), { slot: 'a', version: '1.0.0', trial: false });
  await install(slots, 'b', '2.0.0');
  await slots.beginTrial('b', '2.0.0', new Date(), { from: '1.0.0' });
  tt.match(await planLaunch(slots, base), { slot: 'b', version: '2.0.0', trial: true });
  tt.equal((await slots.status()).pointer.trial?.stage, 'launched', 'marked before it runs');
  // Any later start (crash, watchdog kill, power cut) runs the committed slot.
  tt.match(await planLaunch(slots, base), {
    slot: 'a',
    trial: false,
    why: 'committed (trial of 2.0.0 did not commit)',
  });
  await slots.failTrial('health check failed: relay');
  tt.match(await planLaunch(slots, base), { slot: 'a', why: /trial of 2\.0\.0 failed/ });
  await slots.dropTrial();
  // A pending trial whose slot lost its entry point is not started.
  await slots.beginTrial('b', '2.0.0', new Date(), { from: '1.0.0' });
  await rm(join(slots.dirOf('b'), 'dist'), { recursive: true });
  tt.match(await planLaunch(slots, base), { slot: 'a', trial: false });
  tt.equal((await slots.status()).pointer.trial?.stage, 'pending');
  // An in-process probe trial (no stage) is never launched.
  await slots.dropTrial();
  await install(slots, 'b', '2.0.0');
  await slots.beginTrial('b', '2.0.0', new Date());
  tt.match(await planLaunch(slots, base), { slot: 'a', trial: false });
  // Committed slot empty: the base tree.
  await slots.dropTrial();
  await rm(join(slots.dirOf('a'), 'dist'), { recursive: true });
  tt.match(await planLaunch(slots, base), { slot: 'base' });
});

t.test(
  'launch hands over in this process with the trial mark; bad state runs the base',
  async (tt) => {
    const { fs, slots, base, work } = await setup(tt);
    const savedArgv = process.argv;
    const env: NodeJS.ProcessEnv = { [ENV_TRIAL]: 'inherited' };
    tt.teardown(() => {
      process.argv = savedArgv;
    });
    const g = globalThis as { launched?: unknown };
    const lines: string[] = [];
    await install(slots, 'a', '1.0.0');
    await install(slots, 'b', '2.0.0');
    await slots.beginTrial('b', '2.0.0', new Date(), { from: '1.0.0' });
    await writeFile(join(slots.root, '.current.1.7.tmp'), '{"torn'); // a write cut by a crash
    const plan = await launch({
      slots,
      baseDir: base,
      args: ['hub', '--config', 'c.json'],
      env,
      log: (l) => lines.push(l),
    });
    tt.match(plan, { slot: 'b', trial: true });
    tt.same(
      (await readdir(slots.root)).filter((n) => n.endsWith('.tmp')),
      [],
      'leftovers swept before the hub starts',
    );
    tt.same(g.launched, {
      tag: 'b-2.0.0',
      argv: ['hub', '--config', 'c.json'],
      trial: undefined,
      slot: undefined,
    });
    tt.equal(env[ENV_TRIAL], '2.0.0', 'the trial start carries its version');
    tt.equal(env[ENV_SLOT], 'b');
    tt.match(JSON.parse(lines[0] ?? '{}'), { ns: 'vigil.launch', slot: 'b', trial: true });

    // A corrupt pointer: the base tree still runs (the camera must come up).
    await writeFile(join(slots.root, 'current'), '{torn');
    const slots2 = new HostAppSlots(slots.root, fs);
    const base2 = join(work, 'base2');
    await tree(base2, 'base2');
    const p2 = await launch({
      slots: slots2,
      baseDir: base2,
      args: [],
      env,
      log: () => undefined,
    });
    tt.match(p2, { slot: 'base', why: /slot state unusable .*not JSON.*: base tree/ });
    tt.equal(env[ENV_TRIAL], '', 'no trial mark outside the trial start');
    tt.match(g.launched, { tag: 'base2' });
  },
);
