// Issue #17 item 3 on the real composition (dev/local-run.ts): the companion
// sends heartbeats on a schedule and offers a post-compromise refresh (re-add)
// on a cadence, with no manual step. Short settings (a beat a second, a
// refresh due after 2.5 s): once the scheduler has offered a refresh for the
// three item groups and the hub has answered every beat, the phone holds one
// pending key package per group; the next motion event's clip is sealed with
// the phone re-added to the motion group (a Welcome), which the phone joins,
// consuming its key package, and the clip opens.
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { JsonLogger } from '../../base/logger.js';
import { e2eeDir } from '../../app/account.js';
import { startLocalRun } from '../../dev/local-run.js';
import { SMALL_IDLE, nextStored } from '../fixtures/local-run.js';

t.setTimeout(600_000);

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

t.test('local run: scheduled heartbeats and a refresh by re-add, no manual step', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-local-follow-'));
  const lines: string[] = [];
  let offered: (line: string) => void = () => undefined;
  const refreshOffered = new Promise<string>((resolve) => {
    offered = resolve;
  });
  const logger = new JsonLogger('dev', {
    level: 'debug',
    write: (l) => {
      lines.push(l);
      if (l.includes('"msg":"post-compromise refresh offered"')) offered(l);
    },
  });
  const lr = await startLocalRun({
    dir,
    logger,
    ...SMALL_IDLE,
    heartbeatMs: 1000,
    refreshMs: 2500,
  });
  t.teardown(async () => {
    await lr.stop();
    await rm(dir, { recursive: true, force: true });
  });

  t.match(await refreshOffered, /"groups":"motion,thumbnail,livestream"/, 'refresh offered');
  // one offer is enough: no further beats (a newer offer would replace the pending one)
  await lr.follow.stop();
  const beats = lr.follow.beats;
  t.ok(beats >= 3, `heartbeats went out on the schedule (${beats})`);
  // every beat answered by the hub (one heartbeat-ack each), the offer's included
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (lr.crypto.inbound.filter((m) => m.kind === 'heartbeat-ack').length < beats) return;
      off();
      resolve();
    };
    const off = lr.crypto.onInbound(check);
    check();
  });
  t.pass('the hub answered every scheduled heartbeat');
  const kp = (g: string): string => join(e2eeDir(lr.appDir), 'refresh', `${g}.kp`);
  for (const g of ['motion', 'thumbnail', 'livestream'])
    t.ok(await exists(kp(g)), `a refresh key package is pending for ${g}`);

  lr.media()?.trigger(3000);
  const clip = await nextStored(lr, (it) => it.summary.kind === 'clip');
  t.equal(clip.summary.kind, 'clip', 'the clip after the refresh was stored (it opened)');
  t.notOk(await exists(kp('motion')), 'the phone joined the motion group by the Welcome');
  t.ok(await exists(kp('livestream')), 'livestream: still pending (no live item since)');
  t.same(
    lines.filter((l) => /refresh rejected|desync|"level":"error"/.test(l)),
    [],
    'no refresh rejected, no desync, no error',
  );
});
