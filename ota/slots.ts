/**
 * Application-level A/B slots on the host filesystem:
 *
 *   <root>/slot-a/ , <root>/slot-b/     two application trees
 *   <root>/slot-a.json, slot-b.json      install markers (what a slot holds, verified)
 *   <root>/current                       the pointer: committed slot + pending trial
 *
 * Markers and the pointer are written atomically through DurableFs. Reads
 * (`status()`) change nothing: leftovers of interrupted writes (`.current.*.tmp`)
 * are swept only by `cleanLeftovers()`, which the launcher runs before the hub
 * starts (no writer alive then). A read that swept them used to delete the temp
 * file of a writer still in flight (ENOENT at its rename: a lost commit). Pointer
 * updates (read, change, write) of one HostAppSlots run one at a time, so the
 * hub's writers (trial deadline, health check, agent) share one instance.
 *
 * A slot is
 * only ever used when its marker exists, and the marker is written last (after
 * the tree is extracted and synced), so a crash mid-install leaves a slot
 * without a marker: garbage to be re-installed, never booted.
 *
 * The launcher (systemd ExecStart) boots `bootSlot()`: the committed slot.
 * A trial is run by the agent (a probe of the new slot's process plus the
 * health checks) and either committed or dropped; an interrupted trial is
 * dropped at the next start (one-shot, like the Pi's tryboot flag).
 */
import { createHash } from 'node:crypto';
import { lstat, open, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { Mutex } from '../base/async.js';
import { VigilError } from '../base/errors.js';
import type { DurableFs } from '../hw/os/fs.js';
import { run } from '../hw/os/run.js';

export const SLOT_NAMES = ['a', 'b'] as const;
export type SlotName = (typeof SLOT_NAMES)[number];

export const other = (s: SlotName): SlotName => (s === 'a' ? 'b' : 'a');

export const SlotMarkerSchema = z.object({
  format: z.literal('vigil-slot/1'),
  version: z.string(),
  target: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Digest of the extracted tree (paths, modes, contents) right after install. */
  treeDigest: z.string().regex(/^[0-9a-f]{64}$/),
  installedAt: z.string(),
});
export type SlotMarker = z.infer<typeof SlotMarkerSchema>;

export const PointerSchema = z.object({
  format: z.literal('vigil-slots/1'),
  committed: z.enum(SLOT_NAMES),
  trial: z
    .object({
      slot: z.enum(SLOT_NAMES),
      version: z.string(),
      startedAt: z.string(),
      /**
       * Restart trials only (the hub restarted into the new slot): `pending` until the
       * launcher starts it (once: it writes `launched` first), `failed` when the new
       * version's own health check failed. Absent: an in-process probe trial.
       */
      stage: z.enum(['pending', 'launched', 'failed']).optional(),
      /** The committed version the trial started from (restart trials). */
      from: z.string().optional(),
      /** Why a `failed` trial failed. */
      reason: z.string().max(2000).optional(),
    })
    .optional(),
});
export type Pointer = z.infer<typeof PointerSchema>;

export class SlotError extends VigilError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EOTASLOT', message, options);
    this.name = 'SlotError';
  }
}

export interface SlotStatus {
  readonly pointer: Pointer;
  readonly markers: Readonly<Record<SlotName, SlotMarker | undefined>>;
}

/** The port the agent installs through (host app slots now; rootfs partitions later). */
export interface Slots {
  status(): Promise<SlotStatus>;
  dirOf(slot: SlotName): string;
  /** Invalidate the slot (marker first, durably), then clear it. */
  wipe(slot: SlotName): Promise<void>;
  /** Unpack a verified bundle into a wiped slot and sync it; returns the tree digest. */
  unpack(slot: SlotName, bundlePath: string): Promise<string>;
  writeMarker(slot: SlotName, marker: SlotMarker): Promise<void>;
  /** Digest of the slot's tree now (compared with its marker before reuse). */
  digest(slot: SlotName): Promise<string>;
  /** `restart`: the hub restarts into the slot (launcher); absent: an in-process trial. */
  beginTrial(
    slot: SlotName,
    version: string,
    now: Date,
    restart?: { readonly from: string },
  ): Promise<void>;
  commit(): Promise<void>;
  /** A restart trial's own health check failed (the next start runs the committed slot). */
  failTrial(reason: string): Promise<void>;
  dropTrial(): Promise<void>;
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Digest of a tree: sorted paths with type, mode and content hash. Symlinks by target. */
export async function treeDigest(dir: string, opts: { fsync?: boolean } = {}): Promise<string> {
  const h = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const p = join(dir, r);
      const st = await lstat(p);
      if (st.isSymbolicLink()) h.update(`l ${r} ${await readlink(p)}\n`);
      else if (st.isDirectory()) {
        h.update(`d ${r} ${(st.mode & 0o7777).toString(8)}\n`);
        await walk(r);
      } else if (st.isFile()) {
        const c = createHash('sha256')
          .update(await readFile(p))
          .digest('hex');
        h.update(`f ${r} ${(st.mode & 0o7777).toString(8)} ${c}\n`);
      }
    }
  };
  await walk('');
  if (opts.fsync === true) {
    // Directory entries last, deepest first, so every file is reachable after a power cut.
    const dirs: string[] = [];
    const collect = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true }))
        if (e.isDirectory()) await collect(join(d, e.name));
      dirs.push(d);
    };
    await collect(dir);
    for (const d of dirs) await fsyncPath(d);
    await fsyncPath(dirname(dir));
  }
  return h.digest('hex');
}

export class HostAppSlots implements Slots {
  readonly root: string;
  readonly #fs: DurableFs;
  /** Pointer updates, one at a time (each reads the pointer, then replaces it). */
  readonly #pointerLock = new Mutex();

  constructor(root: string, fs: DurableFs) {
    this.root = root;
    this.#fs = fs;
  }

  dirOf(slot: SlotName): string {
    return join(this.root, `slot-${slot}`);
  }

  #markerPath(slot: SlotName): string {
    return join(this.root, `slot-${slot}.json`);
  }

  get pointerPath(): string {
    return join(this.root, 'current');
  }

  async #readMarker(slot: SlotName): Promise<SlotMarker | undefined> {
    const b = await this.#fs.readIfExists(this.#markerPath(slot));
    if (b === undefined) return undefined;
    try {
      const r = SlotMarkerSchema.safeParse(JSON.parse(b.toString('utf8')));
      return r.success ? r.data : undefined;
    } catch {
      return undefined; // torn or empty: the slot is garbage
    }
  }

  /**
   * Remove leftovers of interrupted atomic writes. Only while no writer can be
   * running (the launcher, before it starts the hub): a writer's temp file is
   * indistinguishable from a leftover.
   */
  async cleanLeftovers(): Promise<number> {
    return this.#fs.cleanTemp(this.root);
  }

  async status(): Promise<SlotStatus> {
    const b = await this.#fs.readIfExists(this.pointerPath);
    let pointer: Pointer = { format: 'vigil-slots/1', committed: 'a' };
    if (b !== undefined) {
      let raw: unknown;
      try {
        raw = JSON.parse(b.toString('utf8'));
      } catch (e) {
        throw new SlotError(`${this.pointerPath} is not JSON`, { cause: e });
      }
      const r = PointerSchema.safeParse(raw);
      if (!r.success) throw new SlotError(`${this.pointerPath} is not a slot pointer`);
      pointer = r.data;
    }
    return { pointer, markers: { a: await this.#readMarker('a'), b: await this.#readMarker('b') } };
  }

  async #writePointer(p: Pointer): Promise<void> {
    await this.#fs.writeFileAtomic(this.pointerPath, `${JSON.stringify(p)}\n`, 'slot-pointer');
  }

  async wipe(slot: SlotName): Promise<void> {
    await this.#pointerLock.run(async () => {
      const { pointer } = await this.status();
      if (pointer.committed === slot)
        throw new SlotError(`refusing to wipe the committed slot ${slot}`);
      await this.#fs.remove(this.#markerPath(slot), `slot-${slot}-marker`);
    });
    await rm(this.dirOf(slot), { recursive: true, force: true });
    this.#fs.crash.point(`slot-${slot}:wiped`);
  }

  async unpack(slot: SlotName, bundlePath: string): Promise<string> {
    const dir = this.dirOf(slot);
    await this.#fs.ensureDir(dir);
    await run(
      'tar',
      ['-xzf', bundlePath, '-C', dir, '--no-same-owner', '--delay-directory-restore'],
      { timeoutMs: 10 * 60_000 },
    );
    this.#fs.crash.point(`slot-${slot}:unpacked`);
    // Make the whole tree durable (fsync every file and directory) before the
    // marker claims it is there; the digest is taken in the same pass.
    const digest = await treeDigest(dir, { fsync: true });
    this.#fs.crash.point(`slot-${slot}:synced`);
    return digest;
  }

  async writeMarker(slot: SlotName, marker: SlotMarker): Promise<void> {
    await this.#fs.writeFileAtomic(
      this.#markerPath(slot),
      `${JSON.stringify(marker)}\n`,
      `slot-${slot}-marker`,
    );
  }

  async digest(slot: SlotName): Promise<string> {
    try {
      return await treeDigest(this.dirOf(slot));
    } catch {
      return ''; // missing or unreadable: not reusable
    }
  }

  async beginTrial(
    slot: SlotName,
    version: string,
    now: Date,
    restart?: { readonly from: string },
  ): Promise<void> {
    await this.#pointerLock.run(async () => {
      const { pointer, markers } = await this.status();
      if (slot === pointer.committed)
        throw new SlotError('the trial slot must be the inactive one');
      if (markers[slot] === undefined)
        throw new SlotError(`slot ${slot} holds no complete install`);
      await this.#writePointer({
        format: 'vigil-slots/1',
        committed: pointer.committed,
        trial: {
          slot,
          version,
          startedAt: now.toISOString(),
          ...(restart ? { stage: 'pending' as const, from: restart.from } : {}),
        },
      });
    });
  }

  /**
   * The launcher is about to start a pending restart trial: record that it was
   * started (durably, before it runs), so that any later start that finds it
   * still uncommitted runs the committed slot instead (one-shot, like tryboot).
   */
  async markLaunched(): Promise<void> {
    await this.#pointerLock.run(async () => {
      const { pointer } = await this.status();
      if (pointer.trial?.stage !== 'pending') throw new SlotError('no pending trial to launch');
      await this.#writePointer({ ...pointer, trial: { ...pointer.trial, stage: 'launched' } });
    });
  }

  /** The trial version's own health check failed: the next start runs the committed slot. */
  async failTrial(reason: string): Promise<void> {
    await this.#pointerLock.run(async () => {
      const { pointer } = await this.status();
      if (pointer.trial === undefined) throw new SlotError('no trial to fail');
      await this.#writePointer({
        ...pointer,
        trial: { ...pointer.trial, stage: 'failed', reason: reason.slice(0, 2000) },
      });
    });
  }

  /** Make the trial slot the committed one. A trial already marked failed never is. */
  async commit(): Promise<void> {
    await this.#pointerLock.run(async () => {
      const { pointer } = await this.status();
      if (pointer.trial === undefined) throw new SlotError('no trial to commit');
      if (pointer.trial.stage === 'failed')
        throw new SlotError(
          `the trial already failed (${pointer.trial.reason ?? 'no reason recorded'}): not committed`,
        );
      await this.#writePointer({ format: 'vigil-slots/1', committed: pointer.trial.slot });
    });
  }

  async dropTrial(): Promise<void> {
    await this.#pointerLock.run(async () => {
      const { pointer } = await this.status();
      if (pointer.trial === undefined) return;
      await this.#writePointer({ format: 'vigil-slots/1', committed: pointer.committed });
    });
  }

  /** What the launcher runs: the committed slot's directory (if it holds an install). */
  async bootSlot(): Promise<{ slot: SlotName; dir: string; marker: SlotMarker | undefined }> {
    const { pointer, markers } = await this.status();
    return {
      slot: pointer.committed,
      dir: this.dirOf(pointer.committed),
      marker: markers[pointer.committed],
    };
  }
}
