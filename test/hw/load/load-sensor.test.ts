import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SysfsLoadSensor } from '../../../hw/load/load-sensor.js';
import { HostPaths } from '../../../hw/os/host-paths.js';

t.test('hottest thermal zone and CPU busy share from a fake root', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-load-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const zones = join(root, 'sys/class/thermal');
  await mkdir(join(zones, 'thermal_zone0'), { recursive: true });
  await mkdir(join(zones, 'thermal_zone1'), { recursive: true });
  await mkdir(join(zones, 'cooling_device0'), { recursive: true });
  await writeFile(join(zones, 'thermal_zone0/temp'), '45000\n');
  await writeFile(join(zones, 'thermal_zone1/temp'), '71500\n');
  await writeFile(join(zones, 'cooling_device0/temp'), '99000\n');
  await mkdir(join(root, 'proc'));
  const stat = join(root, 'proc/stat');
  await writeFile(stat, 'cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 1 1 1\n');
  const s = new SysfsLoadSensor(new HostPaths(root));
  t.same(await s.read(), { cpu: undefined, tempC: 71.5 });
  // +300 busy (user), +100 idle → 75 % busy.
  await writeFile(stat, 'cpu  400 0 100 800 100 0 0 0 0 0\n');
  t.same(await s.read(), { cpu: 0.75, tempC: 71.5 });
});

t.test('no zones and no /proc/stat read as unknown', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vigil-load-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const s = new SysfsLoadSensor(new HostPaths(root));
  t.same(await s.read(), { cpu: undefined, tempC: undefined });
});
