import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../base/logger.js';
import { DurableFs } from '../../hw/os/fs.js';
import {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_REFRESH_MS,
  FollowScheduler,
  dueRefresh,
} from '../../app/follow.js';
import type { RefreshGroup } from '../../app/follow.js';
import { manualClock } from '../fixtures/manual-clock.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test(
  'dueRefresh: groups whose last refresh is a cadence old (never: counted from start)',
  async (t) => {
    t.same(dueRefresh({}, 10, 100, 0), []);
    t.same(dueRefresh({}, 100, 100, 0), ['motion', 'thumbnail', 'livestream']);
    t.same(dueRefresh({ motion: 50, thumbnail: 0 }, 120, 100, 30), ['thumbnail']);
  },
);

t.test('defaults: a heartbeat every hour, a refresh per group every week', async (t) => {
  t.equal(DEFAULT_HEARTBEAT_MS, HOUR);
  t.equal(DEFAULT_REFRESH_MS, 7 * DAY);
  const { clock, advance } = manualClock();
  const sent: RefreshGroup[][] = [];
  const f = new FollowScheduler({
    sendHeartbeat: (r) => {
      sent.push([...r]);
      return Promise.resolve();
    },
    logger: new MemoryLogger(),
    clock,
  });
  await f.start();
  await settle();
  t.same(sent, [[]], 'a heartbeat at once, no refresh yet');
  advance(HOUR - 1);
  await settle();
  t.equal(sent.length, 1);
  advance(1);
  await settle();
  t.equal(sent.length, 2, 'the next one an hour later');
  for (let h = 2; h <= 7 * 24; h++) {
    advance(HOUR);
    await settle();
  }
  t.equal(sent.length, 7 * 24 + 1, 'hourly for a week');
  t.same(sent.at(-1), ['motion', 'thumbnail', 'livestream'], 'the week-old groups are refreshed');
  t.equal(
    sent.slice(0, -1).every((s) => s.length === 0),
    true,
    'no refresh before the cadence',
  );
  advance(HOUR);
  await settle();
  t.same(sent.at(-1), [], 'and not again the hour after');
  t.equal(f.refreshes, 3);
  await f.stop();
  advance(10 * HOUR);
  await settle();
  t.equal(sent.length, 7 * 24 + 2, 'nothing after stop');
});

t.test('a failed heartbeat keeps the refresh due for the next beat', async (t) => {
  const { clock, advance } = manualClock();
  const sent: RefreshGroup[][] = [];
  let fail = true;
  const logger = new MemoryLogger();
  const f = new FollowScheduler({
    sendHeartbeat: (r) => {
      sent.push([...r]);
      return fail ? Promise.reject(new Error('relay down')) : Promise.resolve();
    },
    logger,
    clock,
    heartbeatMs: 600,
    refreshMs: 1000,
  });
  await f.start();
  await settle();
  advance(600);
  await settle();
  t.same(sent.at(-1), [], 'not due yet');
  advance(600);
  await settle();
  t.same(sent.at(-1), ['motion', 'thumbnail', 'livestream']);
  t.ok(logger.lines.some((l) => l.includes('scheduled heartbeat not sent')));
  fail = false;
  advance(600);
  await settle();
  t.same(sent.at(-1), ['motion', 'thumbnail', 'livestream'], 'offered again');
  advance(600);
  await settle();
  t.same(sent.at(-1), [], 'done once the relay took it');
  t.equal(f.beats, 2);
  await f.stop();
});

t.test('refresh dates survive a restart (schedule.json)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-follow-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fs = new DurableFs();
  const { clock, advance } = manualClock();
  const sent: RefreshGroup[][] = [];
  const make = (): FollowScheduler =>
    new FollowScheduler({
      sendHeartbeat: (r) => {
        sent.push([...r]);
        return Promise.resolve();
      },
      logger: new MemoryLogger(),
      clock,
      dir,
      fs,
      heartbeatMs: DAY,
    });
  let f = make();
  await f.start();
  await settle();
  for (let d = 0; d < 7; d++) {
    advance(DAY);
    await settle();
  }
  t.same(sent.at(-1), ['motion', 'thumbnail', 'livestream']);
  await f.idle();
  await f.stop();
  const saved = JSON.parse(await readFile(join(dir, 'schedule.json'), 'utf8')) as {
    refreshedAt: Record<string, number>;
  };
  t.equal(saved.refreshedAt.motion, 7 * DAY);
  // restarted three days later: the refresh is due four days after that, not a week
  advance(3 * DAY);
  f = make();
  await f.start();
  await settle();
  t.same(sent.at(-1), []);
  for (let d = 0; d < 4; d++) {
    advance(DAY);
    await settle();
  }
  t.same(sent.at(-1), ['motion', 'thumbnail', 'livestream'], 'weekly across the restart');
  await f.stop();
  await writeFile(join(dir, 'schedule.json'), 'garbage');
  const logger = new MemoryLogger();
  const g = new FollowScheduler({
    sendHeartbeat: () => Promise.resolve(),
    logger,
    clock,
    dir,
    fs,
  });
  await g.start();
  await g.stop();
  t.ok(logger.lines.some((l) => l.includes('schedule.json unreadable')));
});
