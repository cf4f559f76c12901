/**
 * CPU load and SoC temperature from the kernel: `/proc/stat` (busy share of
 * all CPU time since the previous reading) and the hottest
 * `/sys/class/thermal/thermal_zone*\/temp` (millidegrees). Every path goes
 * through `HostPaths`, so a test points it at a temp dir with fake zones.
 */
import { readFile, readdir } from 'node:fs/promises';
import type { HostPaths } from '../os/host-paths.js';

export interface LoadReading {
  /** Busy CPU share since the previous reading, 0..1 (undefined on the first reading). */
  cpu: number | undefined;
  /** Hottest thermal zone in °C (undefined when the host has no readable zone). */
  tempC: number | undefined;
}

export interface LoadSensor {
  read(): Promise<LoadReading>;
}

export class SysfsLoadSensor implements LoadSensor {
  readonly #paths: HostPaths;
  #prev: { busy: number; total: number } | undefined;

  constructor(paths: HostPaths) {
    this.#paths = paths;
  }

  async read(): Promise<LoadReading> {
    return { cpu: await this.#cpu(), tempC: await this.#temp() };
  }

  async #temp(): Promise<number | undefined> {
    const dir = this.#paths.host('/sys/class/thermal');
    const names = await readdir(dir).catch(() => [] as string[]);
    let max: number | undefined;
    for (const n of names.filter((x) => /^thermal_zone\d+$/.test(x))) {
      const raw = await readFile(`${dir}/${n}/temp`, 'utf8').catch(() => '');
      const milli = Number.parseInt(raw.trim(), 10);
      if (!Number.isFinite(milli)) continue;
      const c = milli / 1000;
      if (max === undefined || c > max) max = c;
    }
    return max;
  }

  async #cpu(): Promise<number | undefined> {
    const raw = await readFile(this.#paths.host('/proc/stat'), 'utf8').catch(() => '');
    const line = raw.split('\n').find((l) => l.startsWith('cpu '));
    if (line === undefined) return undefined;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    if (f.length < 4 || f.some((x) => !Number.isFinite(x))) return undefined;
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
    const now = { busy: total - idle, total };
    const prev = this.#prev;
    this.#prev = now;
    if (prev === undefined || now.total <= prev.total) return undefined;
    return (now.busy - prev.busy) / (now.total - prev.total);
  }
}
