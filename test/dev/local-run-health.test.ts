// Journey 2 on the real composition (dev/local-run.ts): the companion is told the hub's
// health. The local run encodes in software (no hardware encoder here), so the companion's
// hub status must say so from the start; the simulated camera is then unplugged (the
// companion says "camera failed") and plugged back (the condition clears). The hub seals
// each notice in the config group; the companion reads it from the relay (app/hub-link.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { JsonLogger } from '../../base/logger.js';
import type { HubStatus } from '../../app/hub-link.js';
import { startLocalRun } from '../../dev/local-run.js';
import type { LocalRun } from '../../dev/local-run.js';
import { SMALL_IDLE } from '../fixtures/local-run.js';

t.setTimeout(600_000);

/** The companion's hub status once `ok` accepts it (now, or at its next change). */
function statusWhen(lr: LocalRun, ok: (s: HubStatus) => boolean): Promise<HubStatus> {
  return new Promise((resolve) => {
    const check = (s: HubStatus): void => {
      if (!ok(s)) return;
      off();
      resolve(s);
    };
    const off = lr.link.onStatus(check);
    check(lr.link.status());
  });
}

t.test('local run: the companion is told of software encoding and a failed camera', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-local-health-'));
  const lr = await startLocalRun({
    dir,
    logger: new JsonLogger('dev', { level: 'warn', write: () => undefined }),
    ...SMALL_IDLE,
  });
  t.teardown(async () => {
    await lr.stop();
    await rm(dir, { recursive: true, force: true });
  });
  t.equal(lr.media()?.status().encoder.path, 'software', 'the local run encodes in software');

  const soft = await statusWhen(lr, (s) => s.health !== null);
  t.match(soft.health, /encoding in software/, `companion: ${soft.health}`);

  const camera = lr.camera();
  if (!camera) throw new Error('the local run has no camera');
  camera.unplug();
  const failed = await statusWhen(lr, (s) => s.health !== null && /camera failed/.test(s.health));
  t.match(
    failed.health,
    /camera failed \(the camera was unplugged\)/,
    `companion: ${failed.health}`,
  );

  // back: "recovered" clears the condition, then the restarted encoder is software again
  const cleared = statusWhen(lr, (s) => s.health === null);
  camera.replug();
  t.equal((await cleared).health, null, 'the condition clears when the camera is back');
  const again = await statusWhen(lr, (s) => s.health !== null);
  t.match(again.health, /encoding in software/, `companion: ${again.health}`);
});
