import t from 'tap';
import { mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLogger } from '../../../base/logger.js';
import {
  BUILD_FLOOR_MS,
  MAX_AFTER_BUILD_MS,
  TIME_SYNC_THRESHOLD_MS,
  TimeSync,
  buildTimeOf,
  decideTimeSync,
} from '../../../firmware/pairing/time-sync.js';
import { FakeSystemClock } from '../../../hw/clock/system-clock.js';
import type { SystemClock } from '../../../hw/clock/system-clock.js';

const BUILD = Date.UTC(2026, 10, 1);
const NOW = Date.UTC(2026, 10, 23, 12);

void t.test('decision rules', async (t) => {
  // a Pi that lost power a month ago boots with the saved (old) time: set forward
  t.same(decideTimeSync(BUILD, NOW, BUILD), { apply: true, toMs: NOW, skewMs: NOW - BUILD });
  // small skews are left to NTP
  t.same(decideTimeSync(NOW, NOW + TIME_SYNC_THRESHOLD_MS, BUILD), {
    apply: false,
    reason: 'in-sync',
    skewMs: TIME_SYNC_THRESHOLD_MS,
  });
  t.equal(decideTimeSync(NOW, NOW - 1000, BUILD).apply, false);
  // a hub ahead of the phone moves back, but never before the build date
  const d = decideTimeSync(NOW + 86_400_000, NOW, BUILD);
  t.ok(d.apply && d.toMs === NOW && d.skewMs === -86_400_000, 'backwards within bounds');
  t.same(decideTimeSync(NOW, BUILD - 1, BUILD), {
    apply: false,
    reason: 'before-build',
    skewMs: BUILD - 1 - NOW,
  });
  t.same(decideTimeSync(NOW, 0, BUILD).apply, false, 'a phone at 1970 is ignored');
  t.equal(
    (decideTimeSync(NOW, BUILD + MAX_AFTER_BUILD_MS + 1, BUILD) as { reason: string }).reason,
    'implausible',
  );
  t.equal((decideTimeSync(NOW, Number.NaN, BUILD) as { reason: string }).reason, 'implausible');
  t.equal(
    (decideTimeSync(NOW, Number.POSITIVE_INFINITY, BUILD) as { reason: string }).reason,
    'implausible',
  );
});

void t.test('the build date: mtime of the running program, never before the floor', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-build-'));
  const f = join(dir, 'vigil.js');
  await writeFile(f, '');
  const later = new Date(BUILD_FLOOR_MS + 86_400_000 * 100);
  await utimes(f, later, later);
  t.equal(buildTimeOf(f), later.getTime());
  const old = new Date(Date.UTC(2001, 0, 1));
  await utimes(f, old, old);
  t.equal(buildTimeOf(f), BUILD_FLOOR_MS, 'an old mtime (no clock at build) gives the floor');
  t.equal(buildTimeOf(join(dir, 'missing')), BUILD_FLOOR_MS);
});

void t.test('TimeSync applies through the clock port and logs', async (t) => {
  const clock = new FakeSystemClock(BUILD);
  const logger = new MemoryLogger();
  const ts = new TimeSync({ clock, buildTimeMs: BUILD, logger });
  ts.onPhoneTime(NOW);
  const d = await ts.settled();
  t.ok(d.apply);
  t.same(clock.sets, [NOW]);
  t.ok(Math.abs(clock.now() - NOW) < 60_000, 'the clock moved');
  t.ok(logger.lines.some((l) => l.includes('system clock set from the phone')));
  ts.onPhoneTime(NOW + 1000);
  t.equal((await ts.settled()).apply, false, 'now in sync: nothing to do');
  t.same(clock.sets, [NOW]);
  ts.onPhoneTime(BUILD - 86_400_000);
  const before = await ts.settled();
  t.match(before, { apply: false, reason: 'before-build' });
  // the fake clock runs in real time: the skew is measured a moment before this line
  const skew = (before as { skewMs: number }).skewMs;
  const expected = BUILD - 86_400_000 - clock.now();
  t.ok(skew >= expected && skew - expected < 60_000, `skew ${String(skew)} ≈ ${String(expected)}`);
  t.ok(logger.lines.some((l) => l.includes('phone time ignored')));

  const broken: SystemClock = {
    now: () => BUILD,
    set: () => Promise.reject(new Error('EPERM')),
  };
  const l2 = new MemoryLogger();
  const d2 = await new TimeSync({ clock: broken, buildTimeMs: BUILD, logger: l2 }).apply(NOW);
  t.ok(d2.apply, 'decided, but the clock refused: logged, not thrown');
  t.ok(l2.lines.some((l) => l.includes('could not set the system clock') && l.includes('EPERM')));
});
