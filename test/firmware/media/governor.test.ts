import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryLogger } from '../../../base/logger.js';
import {
  DEFAULT_GOVERNOR_LIMITS,
  LoadGovernor,
  nextLevel,
} from '../../../firmware/media/governor.js';
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
