/**
 * Enabling and disabling systemd units in the image's root filesystem offline, as `systemctl
 * --root DIR enable|disable` does for plain units: a symlink per `[Install]` WantedBy= /
 * RequiredBy= target in `/etc/systemd/system/<target>.wants|.requires/`. Done here rather than
 * by the build host's systemctl: on loaded machines its offline enable failed with ECHRNG
 * ("Channel number out of range") twice in a row, then passed on the same tree, and its
 * disable's failure could not be told from "already disabled". Only what the image's own
 * units use is supported (no Alias=, Also=, templates): anything else is refused by name.
 */
import { lstat, mkdir, readFile, readdir, readlink, rm, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { VigilError } from '../base/errors.js';

export class EnableError extends VigilError {
  constructor(message: string) {
    super('EIMAGE_ENABLE', message);
    this.name = 'EnableError';
  }
}

/** Where systemd looks for system units, first match wins (as inside the image). */
const UNIT_DIRS = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];
const CONFIG_DIR = '/etc/systemd/system';

export interface InstallSection {
  readonly wantedBy: string[];
  readonly requiredBy: string[];
}

/** The `[Install]` targets of a unit file; other install keys are refused. */
export function installSection(unitName: string, text: string): InstallSection {
  const out: InstallSection = { wantedBy: [], requiredBy: [] };
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s?.[1] !== undefined) {
      section = s[1];
      continue;
    }
    if (section !== 'Install') continue;
    const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (kv?.[1] === undefined)
      throw new EnableError(`${unitName}: unreadable [Install] line: ${line}`);
    const values = (kv[2] ?? '').split(/\s+/).filter((v) => v !== '');
    if (kv[1] === 'WantedBy') out.wantedBy.push(...values);
    else if (kv[1] === 'RequiredBy') out.requiredBy.push(...values);
    else
      throw new EnableError(`${unitName}: [Install] ${kv[1]}= is not supported by the image build`);
  }
  return out;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isFile();
  } catch {
    return false;
  }
}

/** The unit's path as seen inside the image (e.g. /lib/systemd/system/x.service). */
async function findUnit(rootfs: string, unit: string): Promise<string> {
  for (const dir of UNIT_DIRS) if (await isFile(join(rootfs, dir, unit))) return `${dir}/${unit}`;
  throw new EnableError(`unit ${unit} not found in ${UNIT_DIRS.join(', ')} of ${rootfs}`);
}

/**
 * Enable `units` in `rootfs`: the symlinks systemctl would make, an existing one pointing
 * elsewhere replaced. Returns the links (image paths), in order. A unit without targets is
 * an error (enabling it would do nothing).
 */
export async function enableUnits(rootfs: string, units: readonly string[]): Promise<string[]> {
  const made: string[] = [];
  for (const unit of units) {
    const path = await findUnit(rootfs, unit);
    const install = installSection(unit, await readFile(join(rootfs, path), 'utf8'));
    const links = [
      ...install.wantedBy.map((t) => `${CONFIG_DIR}/${t}.wants/${unit}`),
      ...install.requiredBy.map((t) => `${CONFIG_DIR}/${t}.requires/${unit}`),
    ];
    if (links.length === 0) throw new EnableError(`${unit} has no WantedBy=/RequiredBy= to enable`);
    for (const link of links) {
      const at = join(rootfs, link);
      await mkdir(join(at, '..'), { recursive: true });
      const current = await readlink(at).catch(() => undefined);
      if (current !== path) {
        await rm(at, { force: true });
        await symlink(path, at);
      }
      made.push(link);
    }
  }
  return made;
}

/**
 * Disable `units` in `rootfs`: every symlink under /etc/systemd/system named like one of them
 * or pointing at one (the target's wants, and aliases such as dbus-*.service), as systemctl
 * disable removes. Returns the removed links (image paths); none is not an error.
 */
export async function disableUnits(rootfs: string, units: readonly string[]): Promise<string[]> {
  const names = new Set(units);
  const removed: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(join(rootfs, dir), { withFileTypes: true }).catch(() => []);
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) await walk(p);
      else if (e.isSymbolicLink()) {
        const target = await readlink(join(rootfs, p));
        if (names.has(e.name) || names.has(basename(target))) {
          await rm(join(rootfs, p));
          removed.push(p);
        }
      }
    }
  };
  await walk(CONFIG_DIR);
  return removed;
}
