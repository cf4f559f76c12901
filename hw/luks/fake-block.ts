/**
 * Fake block devices paired with FakeLuks. A "filesystem" on an opened volume
 * is a real directory: mounting moves the volume's directory to the mount
 * point, unmounting (or a simulated reboot) moves it back to a stash, and
 * mkfs empties it. So files written under the mount point persist with the
 * volume — and disappear if the volume is ever formatted again.
 */
/* eslint-disable @typescript-eslint/require-await -- a fake keeps the async signatures of the port it stands in for */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockDeviceInfo, BlockDevices, DeviceContent, FsStats } from './block.js';
import type { FakeLuks } from './fake.js';

export interface FakeDisk {
  path: string;
  partLabel?: string;
  partUuid?: string;
  content: DeviceContent;
  /** A recognised plain filesystem on the raw device (blkid TYPE). */
  fsType?: string;
}

export class FakeBlockDevices implements BlockDevices {
  readonly luks: FakeLuks;
  readonly disks = new Map<string, FakeDisk>();
  readonly stash: string;
  /** mountPoint -> volume device */
  readonly mounted = new Map<string, string>();
  stats: FsStats = { totalBytes: 1 << 30, freeBytes: 1 << 29 };
  mkfsCount = 0;

  constructor(luks: FakeLuks, stashDir: string) {
    this.luks = luks;
    this.stash = stashDir;
  }

  addDisk(d: FakeDisk): void {
    this.disks.set(d.path, d);
    this.luks.devices.add(d.path);
  }

  #volumeDir(device: string): string {
    const v = this.luks.volumes.get(device);
    return join(this.stash, v?.uuid ?? 'none');
  }

  #mapped(path: string): string | undefined {
    const m = /^\/dev\/mapper\/(.+)$/.exec(path);
    return m?.[1] !== undefined ? this.luks.mappings.get(m[1])?.device : undefined;
  }

  async list(): Promise<BlockDeviceInfo[]> {
    return [...this.disks.values()].map((d) => {
      const v = this.luks.volumes.get(d.path);
      const luks = v !== undefined && !v.corrupt;
      return {
        path: d.path,
        type: 'part',
        sizeBytes: 1 << 30,
        partLabel: d.partLabel,
        partType: undefined,
        partUuid: d.partUuid,
        fsType: luks ? 'crypto_LUKS' : d.fsType,
        label: luks ? v.label : undefined,
      };
    });
  }

  async probe(path: string): Promise<Readonly<Record<string, string>>> {
    const dev = this.#mapped(path);
    if (dev !== undefined) {
      const t = this.luks.volumes.get(dev)?.fsType;
      return t !== undefined ? { TYPE: t } : {};
    }
    const v = this.luks.volumes.get(path);
    if (v !== undefined && !v.corrupt) return { TYPE: 'crypto_LUKS' };
    const d = this.disks.get(path);
    return d?.fsType !== undefined ? { TYPE: d.fsType } : {};
  }

  async sample(path: string): Promise<DeviceContent> {
    if (this.luks.volumes.has(path)) return 'data';
    return this.disks.get(path)?.content ?? 'data';
  }

  async mkfsExt4(path: string): Promise<void> {
    const dev = this.#mapped(path);
    if (dev === undefined) throw new Error(`mkfs on unmapped ${path}`);
    const v = this.luks.volumes.get(dev);
    if (v === undefined) throw new Error('no volume');
    this.mkfsCount += 1;
    await rm(this.#volumeDir(dev), { recursive: true, force: true });
    await mkdir(this.#volumeDir(dev), { recursive: true });
    v.fsType = 'ext4';
  }

  async fsck(): Promise<boolean> {
    return true;
  }

  async isMounted(mountPoint: string): Promise<boolean> {
    return this.mounted.has(mountPoint);
  }

  async mount(path: string, mountPoint: string): Promise<void> {
    const dev = this.#mapped(path);
    if (dev === undefined) throw new Error(`mount of unmapped ${path}`);
    if (this.luks.volumes.get(dev)?.fsType !== 'ext4')
      throw new Error(`mount: wrong fs type on ${path}`);
    const entries = await readdir(mountPoint).catch(() => []);
    if (entries.length > 0)
      throw new Error(`mount point ${mountPoint} not empty (a write bypassed the volume?)`);
    await rm(mountPoint, { recursive: true, force: true });
    await mkdir(this.#volumeDir(dev), { recursive: true });
    await rename(this.#volumeDir(dev), mountPoint);
    this.mounted.set(mountPoint, dev);
  }

  async unmount(mountPoint: string): Promise<void> {
    const dev = this.mounted.get(mountPoint);
    if (dev === undefined) return;
    await rm(this.#volumeDir(dev), { recursive: true, force: true });
    await rename(mountPoint, this.#volumeDir(dev));
    await mkdir(mountPoint, { recursive: true });
    this.mounted.delete(mountPoint);
  }

  /** Power cycle: everything unmounted (content stays with its volume), mappings gone. */
  async reboot(): Promise<void> {
    for (const mp of [...this.mounted.keys()]) await this.unmount(mp);
    this.luks.reboot();
  }

  async fsStats(): Promise<FsStats> {
    return this.stats;
  }

  async exists(p: string): Promise<boolean> {
    return stat(p).then(
      () => true,
      () => false,
    );
  }
}
