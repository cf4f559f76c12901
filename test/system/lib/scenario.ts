/**
 * Scenario discovery, header parsing and grouping into boots.
 * The contract is in test/system/README.md.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ValidationError } from '../../../base/errors.js';
import type { DiskSpec, Scenario, ScenarioHeader, ScenarioKind } from './types.js';

export const DEFAULT_TIMEOUT_SEC = 120;
export const DEFAULT_MEMORY_MIB = 1536;
export const SCRATCH_DISK: DiskSpec = { name: 'scratch', sizeMiB: 256 };
/** Disk names the harness itself uses. */
const RESERVED_DISKS = new Set(['root', 'project', 'out']);

const NAME = /^[a-z0-9][a-z0-9-]*$/;
const FILE = /^([a-z0-9][a-z0-9-]*)\.(sh|host\.ts|ts)$/;

const positiveInt = (max: number) => z.coerce.number().int().min(1).max(max);
const diskName = z.string().regex(/^[a-z][a-z0-9-]{0,19}$/, 'disk names: [a-z][a-z0-9-], max 20');

/** "64M", "1G", "512" (MiB) -> MiB. */
export function parseSize(text: string): number {
  const m = /^(\d+)([MG]i?B?)?$/i.exec(text.trim());
  if (!m) throw new ValidationError(`bad size "${text}" (use e.g. 64M or 1G)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'M').charAt(0).toUpperCase();
  const mib = unit === 'G' ? n * 1024 : n;
  if (mib < 1 || mib > 64 * 1024) throw new ValidationError(`size ${text} out of range (1M..64G)`);
  return mib;
}

/** Parse the leading `# @key value` / `// @key value` lines of a scenario file. */
export function parseHeader(text: string, kind: ScenarioKind): ScenarioHeader {
  const comment = kind === 'sh' ? /^\s*#/ : /^\s*\/\//;
  let timeoutSec = DEFAULT_TIMEOUT_SEC;
  let boots = 1;
  let group: string | undefined;
  let memoryMiB = DEFAULT_MEMORY_MIB;
  let quarantine: string | undefined;
  let beside = false;
  const killAt = new Map<number, string>();
  const disks = new Map<string, DiskSpec>([[SCRATCH_DISK.name, SCRATCH_DISK]]);
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line.trim() === '' || line.startsWith('#!')) continue;
    if (!comment.test(line)) {
      // .ts files may start with imports before the header comments end; keep scanning
      // only through a leading block of comments and imports
      if (kind !== 'sh' && /^\s*(import|export)\b/.test(line)) continue;
      break;
    }
    const m = /^\s*(?:#|\/\/)\s*@([a-z-]+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1] ?? '';
    // everything after two spaces is a trailing comment ("@timeout 120   seconds ...")
    const value = (m[2] ?? '').split(/\s{2,}/)[0]?.trim() ?? '';
    const words = value.split(/\s+/).filter(Boolean);
    const bad = (why: string): never => {
      throw new ValidationError(`header "@${key} ${value}": ${why}`);
    };
    switch (key) {
      case 'timeout': {
        const r = positiveInt(3600).safeParse(words[0]);
        if (!r.success) bad('expected seconds (1..3600)');
        else timeoutSec = r.data;
        break;
      }
      case 'boots': {
        const r = positiveInt(10).safeParse(words[0]);
        if (!r.success) bad('expected a boot count (1..10)');
        else boots = r.data;
        break;
      }
      case 'memory': {
        const r = z.coerce.number().int().min(256).max(8192).safeParse(words[0]);
        if (!r.success) bad('expected MiB (256..8192)');
        else memoryMiB = r.data;
        break;
      }
      case 'quarantine': {
        if (value === '') bad('expected a reason');
        quarantine = value;
        break;
      }
      case 'beside': {
        if (kind !== 'host') bad('only host scenarios (.host.ts) run beside the others');
        if (value !== '') bad('takes no value');
        beside = true;
        break;
      }
      case 'group': {
        if (words.length !== 1 || !NAME.test(words[0] ?? '')) bad('expected one name [a-z0-9-]');
        group = words[0];
        break;
      }
      case 'disk': {
        const n = diskName.safeParse(words[0]);
        if (!n.success || words.length !== 2) bad('expected "NAME SIZE"');
        const name = words[0] ?? '';
        if (RESERVED_DISKS.has(name)) bad(`"${name}" is reserved`);
        disks.set(name, { name, sizeMiB: parseSize(words[1] ?? '') });
        break;
      }
      case 'kill-at': {
        const b = positiveInt(10).safeParse(words[0]);
        if (!b.success || words.length !== 2) bad('expected "BOOT MARKER"');
        else killAt.set(b.data, words[1] ?? '');
        break;
      }
      default:
        bad('unknown key (timeout, boots, disk, kill-at, group, memory, quarantine, beside)');
    }
  }
  for (const b of killAt.keys()) {
    if (b >= boots) {
      throw new ValidationError(
        `@kill-at ${b}: only boots before the last can be cut (@boots ${boots})`,
      );
    }
  }
  if (group !== undefined && (boots > 1 || killAt.size > 0)) {
    throw new ValidationError('@group is only for single-boot scenarios without @kill-at');
  }
  return {
    timeoutSec,
    boots,
    killAt,
    disks: [...disks.values()],
    group,
    memoryMiB,
    quarantine,
    beside,
  };
}

export interface Discovered {
  readonly scenarios: readonly Scenario[];
  /** Files that look like scenarios but have a bad header: reported as failures. */
  readonly broken: readonly { name: string; reason: string }[];
}

/** Every scenario in `dir` (sorted by name); files starting with "_" are helpers. */
export async function discover(dir: string): Promise<Discovered> {
  const scenarios: Scenario[] = [];
  const broken: { name: string; reason: string }[] = [];
  const names = (await readdir(dir)).sort();
  for (const f of names) {
    if (f.startsWith('_') || f.startsWith('.')) continue;
    if (f.endsWith('.d.ts')) continue;
    const m = FILE.exec(f);
    if (!m) {
      if (/\.(sh|ts)$/.test(f))
        broken.push({ name: f, reason: 'bad file name (<area>-<name>.sh|.ts|.host.ts)' });
      continue;
    }
    const name = m[1] ?? f;
    const kind: ScenarioKind = m[2] === 'sh' ? 'sh' : m[2] === 'ts' ? 'ts' : 'host';
    const file = join(dir, f);
    try {
      const header = parseHeader(await readFile(file, 'utf8'), kind);
      scenarios.push({ name, kind, file, header });
    } catch (err) {
      broken.push({ name, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  return { scenarios, broken };
}

/** Keep scenarios whose name contains any of the filters (all when there are none). */
export function filterScenarios<T extends { name: string }>(
  all: readonly T[],
  only: readonly string[],
): T[] {
  if (only.length === 0) return [...all];
  return all.filter((s) => only.some((o) => s.name.includes(o)));
}

/** One qemu boot sequence: a lone scenario (maybe several boots) or a group sharing a boot. */
export interface BootPlan {
  readonly id: string;
  readonly scenarios: readonly Scenario[];
  readonly boots: number;
  readonly killAt: ReadonlyMap<number, string>;
  readonly disks: readonly DiskSpec[];
  readonly memoryMiB: number;
  /** Guest seconds for one boot: the sum of the scenarios' timeouts. */
  readonly timeoutSec: number;
}

/** Guest scenarios -> boot plans, in name order; a group runs where its first member sorts. */
export function planBoots(scenarios: readonly Scenario[]): BootPlan[] {
  const plans: BootPlan[] = [];
  const groups = new Map<string, Scenario[]>();
  const order: (Scenario | string)[] = [];
  for (const s of scenarios) {
    if (s.kind === 'host') continue;
    const g = s.header.group;
    if (g === undefined) order.push(s);
    else {
      const members = groups.get(g);
      if (members) members.push(s);
      else {
        groups.set(g, [s]);
        order.push(g);
      }
    }
  }
  for (const item of order) {
    if (typeof item !== 'string') {
      const h = item.header;
      plans.push({
        id: item.name,
        scenarios: [item],
        boots: h.boots,
        killAt: h.killAt,
        disks: h.disks,
        memoryMiB: h.memoryMiB,
        timeoutSec: h.timeoutSec,
      });
      continue;
    }
    const members = groups.get(item) ?? [];
    const disks = new Map<string, DiskSpec>();
    for (const s of members) {
      for (const d of s.header.disks) {
        const prev = disks.get(d.name);
        disks.set(d.name, prev && prev.sizeMiB > d.sizeMiB ? prev : d);
      }
    }
    plans.push({
      id: `group-${item}`,
      scenarios: members,
      boots: 1,
      killAt: new Map(),
      disks: [...disks.values()],
      memoryMiB: Math.max(...members.map((s) => s.header.memoryMiB)),
      timeoutSec: members.reduce((n, s) => n + s.header.timeoutSec, 0),
    });
  }
  return plans;
}
