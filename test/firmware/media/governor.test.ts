import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import {
  DEFAULT_GOVERNOR_LIMITS,
  LoadGovernor,
  nextLevel,
  startLoadGovernor,
} from '../../../firmware/media/governor.js';
import type { LoadReading } from '../../../hw/load/load-sensor.js';
import type { LoadLevel } from '../../../firmware/media/governor.js';
import { SysfsLoadSensor } from '../../../hw/load/load-sensor.js';
import { HostPaths } from '../../../hw/os/host-paths.js';
import { HUB_HEALTH_TOPIC, decodeControl } from '../../../protocol/live-control.js';

const L = DEFAULT_GOVERNOR_LIMITS;

t.test(
  'nextLevel: one step down per hot reading, hysteresis band holds, cool recovers',
  async (t) => {
    t.equal(nextLevel('full', { cpu: 0.95, tempC: 50 }, L), 'reduced');
    t.equal(nextLevel('reduced', { cpu: 0.1, tempC: 85 }, L), 'motion-only');
    t.equal(nextLevel('motion-only', { cpu: 0.95, tempC: 85 }, L), 'motion-only');
    t.equal(nextLevel('motion-only', { cpu: 0.8, tempC: 60 }, L), 'motion-only');
    t.equal(nextLevel('reduced', { cpu: 0.1, tempC: 75 }, L), 'reduced');
    t.equal(nextLevel('motion-only', { cpu: 0.1, tempC: 60 }, L), 'full');
    t.equal(nextLevel('full', { cpu: undefined, tempC: undefined }, L), 'full');
  },
);

t.test('fake thermal zone: degrade, fall back, recover; each change reported once', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-gov-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const zone = join(root, 'sys/class/thermal/thermal_zone0');
  await mkdir(zone, { recursive: true });
  const setTemp = (c: number): Promise<void> => writeFile(join(zone, 'temp'), `${c * 1000}\n`);
  const notices: string[] = [];
  const levels: [LoadLevel, number][] = [];
  const gov = new LoadGovernor({
    sensor: new SysfsLoadSensor(new HostPaths(root)),
    logger: new MemoryLogger(),
    onLevel: (level, fps) => levels.push([level, fps]),
    channel: {
      sendApp: (topic, body) => {
        t.equal(topic, HUB_HEALTH_TOPIC);
        const d = decodeControl(HUB_HEALTH_TOPIC, body);
        if (!d.ok) throw d.error;
        notices.push(d.value.condition);
        return Promise.resolve();
      },
    },
  });
  const run = async (c: number): Promise<LoadLevel> => {
    await setTemp(c);
    return gov.tick();
  };
  t.equal(await run(60), 'full');
  t.equal(await run(82), 'reduced');
  t.equal(await run(82), 'motion-only');
  t.equal(await run(85), 'motion-only');
  t.equal(await run(75), 'motion-only', 'inside the hysteresis band: no change');
  t.equal(await run(65), 'full');
  t.equal(await run(65), 'full');
  t.same(levels, [
    ['reduced', L.reducedFps],
    ['motion-only', 0],
    ['full', L.fullFps],
  ]);
  t.same(notices, ['load-degraded', 'load-degraded', 'recovered']);
});

t.test('wired to the pipeline: a fake thermal zone steps the detector down and back', async (t) => {
  // The real interval (1 s, the shortest the config allows) and the real sysfs sensor on a
  // temp dir; the test waits for each change (a notice), never for a time.
  const root = await mkdtemp(join(tmpdir(), 'vigil-gov-wired-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const zone = join(root, 'sys/class/thermal/thermal_zone3');
  await mkdir(zone, { recursive: true });
  const setTemp = (c: number): Promise<void> => writeFile(join(zone, 'temp'), `${c * 1000}\n`);
  await setTemp(50);
  const real = new SysfsLoadSensor(new HostPaths(root));
  let reads = 0;
  const readWaiters: (() => void)[] = [];
  const sensor = {
    async read(): Promise<LoadReading> {
      const r = await real.read();
      reads++;
      for (const w of readWaiters.splice(0)) w();
      return r;
    },
  };
  const readsPassed = async (n: number): Promise<void> => {
    const until = reads + n;
    while (reads < until) await new Promise<void>((r) => readWaiters.push(r));
  };
  const applied: [string, number][] = [];
  const notices: { condition: string; detail: string | undefined }[] = [];
  const noticeWaiters: (() => void)[] = [];
  const noticeCount = async (n: number): Promise<void> => {
    while (notices.length < n) await new Promise<void>((r) => noticeWaiters.push(r));
  };
  const wired = startLoadGovernor({
    media: { setAnalysisLevel: (level, fps) => applied.push([level, fps]) },
    sensor,
    logger: new MemoryLogger(),
    limits: { ...L, tempHighC: 75, tempLowC: 65, fullFps: 4, reducedFps: 1, intervalS: 1 },
    channel: {
      sendApp: (_topic, body) => {
        const d = decodeControl(HUB_HEALTH_TOPIC, body);
        if (!d.ok) throw d.error;
        notices.push({ condition: d.value.condition, detail: d.value.detail });
        for (const w of noticeWaiters.splice(0)) w();
        return Promise.resolve();
      },
    },
  });
  // The governor's timer is unref'd (it must not keep a stopping hub alive): hold the test open.
  const hold = setInterval(() => undefined, 60_000);
  t.teardown(() => {
    wired.stop();
    clearInterval(hold);
  });
  await readsPassed(2);
  t.same(applied, [], 'cool: nothing changes, nothing is sent');
  await setTemp(80); // over the limit: reduced, then motion-only
  await noticeCount(2);
  t.same(applied, [
    ['reduced', 1],
    ['motion-only', 0],
  ]);
  t.match(notices, [
    { condition: 'load-degraded', detail: 'analysis lowered to 1 fps' },
    { condition: 'load-degraded', detail: /motion-only/ },
  ]);
  await readsPassed(2);
  t.equal(notices.length, 2, 'still hot: no repeated notice');
  await setTemp(60);
  await noticeCount(3);
  t.match(notices[2], { condition: 'recovered' });
  t.same(applied.at(-1), ['full', 4]);
  await readsPassed(2);
  t.equal(notices.length, 3, 'recovered once');
  t.equal(wired.governor.level, 'full');
});
