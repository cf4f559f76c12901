import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { ProcessTrialProbe } from '../../ota/probe.js';
import { makeAppTree, tempDir } from './helpers.js';

t.test(
  'probes the new slot process: healthy, unhealthy, wrong version, hang, missing',
  async (tt) => {
    const work = await tempDir();
    tt.teardown(() => rm(work, { recursive: true, force: true }));
    for (const b of ['healthy', 'unhealthy', 'hang'] as const)
      await makeAppTree(join(work, b), '1.2.3', b);
    const p = new ProcessTrialProbe();
    const ok = await p.probe(join(work, 'healthy'), '1.2.3', { timeoutMs: 30_000 });
    tt.same(ok, { ok: true, reason: 'probe answered healthy' });
    const wrong = await p.probe(join(work, 'healthy'), '9.9.9', { timeoutMs: 30_000 });
    tt.match(wrong.reason, /runs 1\.2\.3, expected 9\.9\.9/);
    const sick = await p.probe(join(work, 'unhealthy'), '1.2.3', { timeoutMs: 30_000 });
    tt.notOk(sick.ok);
    tt.match(sick.reason, /MLS state does not load/);
    const hang = await p.probe(join(work, 'hang'), '1.2.3', { timeoutMs: 1500 });
    tt.notOk(hang.ok);
    tt.match(hang.reason, /did not answer within 1500 ms/);
    const none = await p.probe(join(work, 'nothing-here'), '1.2.3', { timeoutMs: 30_000 });
    tt.notOk(none.ok);
    tt.match(none.reason, /probe failed/);
  },
);
